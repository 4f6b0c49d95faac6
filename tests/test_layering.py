"""Which package may import which: the house rules, read from the source.

buildpacks know nothing of where steps run (runtime hands them an executor),
and the runtime and the router know nothing of the push (gitserver) or the
deployer (hooks). Every import statement counts, those inside functions too.
"""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RULES = {"buildpacks": ("runtime", "gitserver", "hooks", "router"),
         "router": ("gitserver", "hooks"),
         "runtime": ("gitserver", "hooks")}


def imported(path: Path) -> set[str]:
    """Absolute module names `path` imports (relative imports stay in its package)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def violations(package: str, forbidden: tuple[str, ...]) -> list[str]:
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for name in sorted(imported(path)):
            if name.split(".")[0] in forbidden:
                found.append(f"{path.relative_to(ROOT)} imports {name}")
    return found


@pytest.mark.parametrize("package", sorted(RULES))
def test_package_imports_nothing_it_must_not(package):
    assert (ROOT / package / "__init__.py").is_file()
    assert violations(package, RULES[package]) == []


def test_the_check_sees_imports_inside_functions(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("from .sibling import x\n\ndef f():\n    from runtime.limits import run_limited\n"
                      "    import hooks.deploy as d\n")
    assert imported(module) == {"runtime.limits", "hooks.deploy"}


def test_importing_every_buildpack_loads_nothing_of_runtime():
    # Catches a path through a third package (dotcloud.*) that the source check cannot see.
    modules = sorted(p.stem for p in (ROOT / "buildpacks").glob("*.py") if p.stem != "__init__")
    code = ("import importlib, sys\n"
            f"for m in {modules!r}: importlib.import_module('buildpacks.' + m)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('runtime', 'gitserver', 'hooks', 'router')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "[]"
