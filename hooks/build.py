"""Builds a release: exports the pushed tree, reads its build file, and builds
every service through its buildpack into DATA/releases/APP/vN.

A release directory is written once and never changed after its
manifest.json (written last) exists; dependencies live in the shared,
content-addressed cache, never in a live release.
"""
import shutil
import time
from pathlib import Path

from buildpacks import build_service, plan
from buildpacks.base import DEFAULT_PATH, BuildContext
from buildpacks.buildfile import load_tree
from buildpacks.disklimit import Bounded, DiskLimit
from dotcloud import appusers, filemodes, logs
from dotcloud.desired import DATA_TYPES, Manifest, ServiceManifest
from dotcloud.errors import BuildError
from dotcloud.models import Release
from dotcloud.resources import build_limits
from dotcloud.settings import Settings
from runtime.executor import executor_for

from .export import export_tree
from .progress import Progress


def release_dir(settings: Settings, app: str, build: int) -> Path:
    return settings.paths.release(app, build)


def scratch_dir(settings: Settings, uid: int) -> Path:
    """The TMPDIR of builds run as uid: emptied before and after each build, and
    measured with the release meanwhile (max_release_bytes)."""
    return settings.paths.tool_cache(uid) / "tmp"


def build(settings: Settings, app: str, release: Release, repo: Path, variables: dict,
          progress: Progress) -> Manifest:
    """Build `release` (its revision from `repo`); return the manifest."""
    rev = release.revision[:7]
    progress.step("Building the application...")
    t0 = time.monotonic()
    root = release_dir(settings, app, release.build)
    if root.exists():
        raise BuildError(f"release directory {root.name} already exists; refusing to overwrite it")
    src = root / "src"
    export_tree(repo, release.revision, src, settings.max_release_bytes)
    disk = DiskLimit(settings.max_release_bytes, root)
    # Built as the app's own user, into a directory it owns until it is sealed below.
    # (Under docker too: the build container's steps run as that uid.)
    user = appusers.for_app(settings, app)
    tools = None
    if user is not None:
        filemodes.group(root.parent, user.gid)
        filemodes.own_tree(root, user.uid, user.gid)
        tools = settings.paths.tool_cache(user.uid)
        filemodes.own(tools, user.uid, user.gid)
        scratch = scratch_dir(settings, user.uid)
        shutil.rmtree(scratch, ignore_errors=True)   # what a build killed outright left
        filemodes.own(scratch, user.uid, user.gid)
        disk.scratch = (scratch,)
    t0 = progress.mark("receive", t0)
    buildfile = load_tree(src)
    for warning in buildfile.warnings:
        progress.line(f"warning: {warning}")
    services = {}
    for name, spec in buildfile.services.items():
        log = progress.service(name)
        env = dict(spec.environment)
        env.update(variables)
        env.update(DOTCLOUD_PROJECT=app, DOTCLOUD_SERVICE_NAME=name,
                   PATH=DEFAULT_PATH,     # the operator's PATH never reaches a build
                   HOME=str(root), LANG="C.UTF-8")
        if tools is not None:
            env["TMPDIR"] = str(scratch_dir(settings, user.uid))
        # Its own build limits, not what its instances run under (dotcloud.resources).
        limits = build_limits(spec.build_limits, spec.limits.over(settings.default_limits),
                              settings.default_build_limits)
        with executor_for(settings, app, name, spec.type, root, limits=limits) as executor:
            # The swarm runtime's (runtime.build_nodes); a data service builds nothing.
            if getattr(executor, "builder", None) and spec.type not in DATA_TYPES:
                log(f"I am {executor.builder}, and I will be your builder today")
            ctx = BuildContext(app=app, service=spec, src=src / spec.approot, release_dir=root,
                               cache_dir=settings.paths.cache, env=env, log=log,
                               timeout=settings.build_timeout,
                               executor=Bounded(executor, disk),
                               python_interpreters=settings.python_interpreters,
                               node_interpreters=settings.node_interpreters,
                               python_version=str(settings.python_version or ""),
                               user=None if user is None else (user.uid, user.gid),
                               tool_cache_dir=tools,
                               # Under swarm a node runs them from the data image.
                               servers_on_host=settings.runtime != "swarm")
            kind = "incremental build" if plan(ctx) else "clean build"
            log(f"Build started for revision {rev} ({kind})")
            started = time.monotonic()
            try:
                result = build_service(ctx)
            except MemoryError as e:   # a step the kernel OOM-killed (runtime.limits)
                raise BuildError(f"{name}: the build failed: {e}") from None
        log(f"Build completed successfully in {time.monotonic() - started:.1f}s. "
            f"Compiled image size is {_size(result.size_bytes)}")
        services[name] = ServiceManifest(name, spec.to_dict(), str(ctx.src), bool(result.http),
                                         result.processes, result.env)
    for scratch in disk.scratch:
        shutil.rmtree(scratch, ignore_errors=True)
    # Measured once more as a whole: what ran between steps (copies, links) counts too.
    disk.check(force=True)
    if settings.runtime != "process":
        # Each service an image of its own, once the whole release is built.
        from runtime import docker_image    # the docker SDK: only for its runtimes
        services = docker_image.for_release(settings, app, release.build, root, services,
                                            progress.service, variables)
    if user is not None:
        # Read-only from now on, to the app too; readable by its group alone.
        sealed = time.monotonic()
        count = filemodes.seal(root, user.gid, others=False)
        logs.get("build").info("release_sealed", app=app, release=release.build,
                               entries=count, seconds=round(time.monotonic() - sealed, 3))
    progress.mark("build", t0)
    manifest = Manifest.new(release.revision, services)
    manifest.save(root / Manifest.FILE)
    progress.step("Application build is done")
    return manifest


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB"):
        if n < 1024:
            return f"{n:.0f}{unit}"
        n /= 1024
    return f"{n:.1f}GB"
