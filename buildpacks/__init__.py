"""Turning a pushed tree into runnable services, one module per service type.

The pipeline uses `buildpacks.buildfile` (parse, load_tree, the spec
types), `buildpacks.base` (BuildContext, BuildResult) and the three
functions here: `plan`, `build_service`, `run_postinstall` (from
`buildpacks.build`). Nothing in this package knows about SSH, routing or
running processes: it declares the commands; the runtime runs them.
"""

__all__ = ["build_service", "plan", "run_postinstall"]


def __getattr__(name):
    # Lazy, so `python -m buildpacks.staticserve` does not import the builder.
    if name in __all__:
        from . import build
        return getattr(build, name)
    raise AttributeError(f"module 'buildpacks' has no attribute {name!r}")
