"""Which Node package manager a service uses, how to run it, and where it comes from.

As on Heroku: `packageManager` in package.json (`pnpm@9.12.0`) decides,
else the lock file (package-lock.json or npm-shrinkwrap.json: npm;
yarn.lock: yarn; pnpm-lock.yaml: pnpm), else npm. Two lock files, an
unknown manager or a manager that disagrees with the lock are refused with
one line. yarn and pnpm (and an npm other than node's own) are installed
from the npm registry by node's npm into the shared cache
(`CACHE/node-tools/NAME-VERSION/`), once per version; the registry is the
machine's npm configuration, never the operator's PATH. This module says
what to run; nodejs.py runs it.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from dotcloud.errors import BuildError

from . import cache
from .base import BuildContext, build_env
from .detect import read_text
from .spec import BuildfileError
from .steps import check_step

LOCKS = {"package-lock.json": "npm", "npm-shrinkwrap.json": "npm", "yarn.lock": "yarn",
         "pnpm-lock.yaml": "pnpm"}
# Settings files that change what an install does: copied beside the lock
# and part of the cache key.
CONFIGS = (".npmrc", ".yarnrc", ".yarnrc.yml", "pnpm-workspace.yaml")
# corepack's form: NAME@VERSION, optionally +ALGORITHM.HEX, the digest of
# the package's tarball.
PACKAGE_MANAGER_RE = re.compile(r"(npm|yarn|pnpm|[^@\s]+)@(\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?)"
                                r"(?:\+(sha1|sha224|sha256|sha512)\.([0-9a-f]+))?")
DIGESTS = ("sha1", "sha224", "sha256", "sha512")
TARBALL_DIGESTS = ".tarball-digests.json"   # in a tool's cache entry
# Versions used when only a lock file names the manager: the last release
# of the line that writes that lock format.
YARN_CLASSIC = "1.22.22"
PNPM_BY_LOCKFILE = {"5": "7.33.7", "6": "8.15.9", "9": "9.15.9"}
NPM_FLAGS = ("--no-audit", "--no-fund", "--no-update-notifier")
TOOL_PACKAGES = {"npm": "npm", "pnpm": "pnpm", "yarn": "yarn"}
BERRY_PACKAGE = "@yarnpkg/cli-dist"   # yarn 2+ as published on the npm registry


@dataclass(frozen=True)
class Manager:
    name: str                # npm, yarn or pnpm
    version: str | None      # None: the npm that comes with the chosen node
    lock: str | None         # the lock file's name in approot
    digest: tuple[str, str] | None = None   # (algorithm, hex) from packageManager

    @property
    def berry(self) -> bool:
        return self.name == "yarn" and int(self.version.split(".")[0]) >= 2

    @property
    def label(self) -> str:
        return f"{self.name}@{self.version}" if self.version else self.name


def _lock_version(text: str, rel: str) -> str:
    if rel == "yarn.lock":
        if "__metadata:" in text:
            raise BuildError("yarn.lock is a Yarn 2+ lock file: name the yarn version in "
                             "package.json's packageManager (e.g. \"yarn@4.5.0\")")
        return YARN_CLASSIC
    match = re.search(r"^lockfileVersion:\s*['\"]?(\d+)", text, re.M)
    version = PNPM_BY_LOCKFILE.get(match.group(1)) if match else None
    if version is None:
        raise BuildError("pnpm-lock.yaml: unknown lockfileVersion: name the pnpm version in "
                         "package.json's packageManager (e.g. \"pnpm@9.12.0\")")
    return version


def _refuse_workspaces(src: Path, package: dict) -> None:
    # The install runs in the cache beside package.json and the lock only;
    # a workspace's packages would be missing there.
    if package.get("workspaces"):
        raise BuildError("package.json: workspaces (a monorepo) are not supported: give the "
                         "service the approot of one package, with its own lock file")
    try:
        text = read_text(src, "pnpm-workspace.yaml") or ""
    except BuildfileError as e:
        raise BuildError(str(e)) from None
    if re.search(r"^packages\s*:", text, re.M):
        raise BuildError("pnpm-workspace.yaml: workspace packages (a monorepo) are not "
                         "supported: give the service the approot of one package, with its "
                         "own lock file")


def detect(src: Path, package: dict) -> Manager:
    """The service's package manager, or BuildError saying what is wrong."""
    _refuse_workspaces(src, package)
    locks = [rel for rel in LOCKS if os.path.lexists(src / rel)]
    if len(locks) > 1:
        raise BuildError(f"two lock files: {' and '.join(locks[:2])}; keep only the one of the "
                         "package manager you use")
    lock = locks[0] if locks else None
    declared = package.get("packageManager")
    if declared is not None:
        match = PACKAGE_MANAGER_RE.fullmatch(declared) if isinstance(declared, str) else None
        if not match:
            raise BuildError(f"package.json: packageManager must be NAME@VERSION, e.g. "
                             f"\"pnpm@9.12.0\" (got {str(declared)[:60]!r})")
        name, version = match.group(1), match.group(2)
        digest = (match.group(3), match.group(4)) if match.group(3) else None
        if name not in TOOL_PACKAGES:
            raise BuildError(f"package.json: packageManager '{declared[:60]}' is not a package "
                             "manager this platform runs: use npm, yarn or pnpm")
        if lock is not None and LOCKS[lock] != name:
            raise BuildError(f"package.json: packageManager is {name}@{version} but the lock "
                             f"file is {lock}; remove one of them")
        return Manager(name, version, lock, digest)
    if lock is None or LOCKS[lock] == "npm":
        return Manager("npm", None, lock)
    try:
        text = read_text(src, lock) or ""
    except BuildfileError as e:
        raise BuildError(str(e)) from None
    return Manager(LOCKS[lock], _lock_version(text, lock), lock)


@dataclass(frozen=True)
class Tool:
    """How to invoke a manager: argv prefix, and a directory for PATH."""
    argv: tuple[str, ...]
    bin_dir: Path | None = None


def fetch(ctx: BuildContext, manager: Manager, node: str, npm: str) -> Tool:
    """The manager's program, installed into the cache on first use."""
    if manager.version is None:
        return Tool((npm,))
    name = manager.name
    package = BERRY_PACKAGE if manager.berry else TOOL_PACKAGES[name]
    entry = cache.Entry(ctx.cache_dir / "node-tools", f"{name}-{manager.version}")

    def install(path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)    # made for the build's user already
        ctx.log(f"Fetching {manager.label} from the npm registry")
        npm_args = (*NPM_FLAGS, "--cache", str(ctx.tool_cache("npm-cache")))
        # The tarball first, so its digest can be kept for packageManager's
        # +sha512.… (corepack's pin); npm checks the registry's integrity.
        # cwd is the empty target: npm would take a directory named like the
        # spec in cwd for a local package.
        check_step(f"downloading {manager.label}", (
            npm, "pack", *npm_args, "--loglevel=warn", "--pack-destination", str(path),
            f"{package}@{manager.version}"),
            cwd=path, env=build_env(ctx), timeout=ctx.timeout, log=ctx.log,
            executor=ctx.executor)
        tarballs = sorted(path.glob("*.tgz"))
        if len(tarballs) != 1:
            raise BuildError(f"downloading {manager.label}: npm pack left no tarball")
        data = tarballs[0].read_bytes()
        (path / TARBALL_DIGESTS).write_text(json.dumps(
            {algorithm: hashlib.new(algorithm, data).hexdigest() for algorithm in DIGESTS}))
        check_step(f"installing {manager.label}", (
            npm, "install", *npm_args, "--no-package-lock", "--ignore-scripts",
            "--prefix", str(path), f"./{tarballs[0].name}"),
            cwd=path, env=build_env(ctx), timeout=ctx.timeout, log=ctx.log,
            executor=ctx.executor)
        tarballs[0].unlink()
    cache.ensure(entry, install, on_wait=lambda: ctx.log(f"Waiting for {manager.label}..."),
                 owner=ctx.user)
    _check_digest(manager, entry.path / TARBALL_DIGESTS)
    bin_dir = entry.path / "node_modules" / ".bin"
    script = os.path.realpath(bin_dir / name)
    if not os.path.isfile(script):
        raise BuildError(f"{manager.label} from the npm registry has no '{name}' program")
    return Tool((node, script), bin_dir)


def _check_digest(manager: Manager, digests: Path) -> None:
    if manager.digest is None:
        return
    if manager.berry:
        # corepack pins yarn 2+ by the file it gets from yarn's own site, not
        # the npm registry's tarball, so the pin cannot be compared here.
        return
    algorithm, expected = manager.digest
    try:
        actual = json.loads(digests.read_text())[algorithm]
    except (OSError, ValueError, KeyError):
        actual = "unknown"
    if actual != expected:
        raise BuildError(f"package.json: packageManager pins {manager.label} to {algorithm} "
                         f"{expected[:16]}..., but the npm registry's {manager.label} is "
                         f"{actual[:16]}...")


def registry(ctx: BuildContext, npm: str) -> str:
    """The machine's npm registry (`npm config get registry`), for yarn and pnpm."""
    lines: list[str] = []
    status = ctx.executor.run((npm, "config", "get", "registry"), cwd=ctx.src,
                              env=build_env(ctx), timeout=60, on_line=lines.append)
    value = "\n".join(lines).strip()
    if status != 0 or not value.startswith(("http://", "https://")):
        raise BuildError(f"'npm config get registry' failed (exit {status}): {value[:200]}")
    return value


def tool_env(ctx: BuildContext, manager: Manager, npm: str) -> dict[str, str]:
    """Variables every run of the manager needs (its caches, the registry)."""
    if manager.name == "pnpm":
        # pnpm reads .npmrc files, but not necessarily the ones node's npm
        # reads (its global one sits beside npm): it is told npm's registry.
        return {"npm_config_store_dir": str(ctx.tool_cache("pnpm-store")),
                "npm_config_registry": registry(ctx, npm),
                "npm_config_update_notifier": "false"}
    if manager.name != "yarn":
        return {}
    if not manager.berry:
        return {"YARN_CACHE_FOLDER": str(ctx.tool_cache("yarn-cache")),
                "YARN_REGISTRY": registry(ctx, npm)}
    # Berry reads no .npmrc; node_modules (not Plug'n'Play) is what we cache
    # and link; the cached yarn is the one packageManager names, so a
    # committed yarnPath is not followed.
    return {"YARN_NPM_REGISTRY_SERVER": registry(ctx, npm).rstrip("/"),
            "YARN_NODE_LINKER": "node-modules", "YARN_ENABLE_GLOBAL_CACHE": "false",
            "YARN_CACHE_FOLDER": str(ctx.tool_cache("yarn-berry-cache")),
            "YARN_ENABLE_TELEMETRY": "0", "YARN_ENABLE_PROGRESS_BARS": "false",
            "YARN_IGNORE_PATH": "1"}


def install_args(ctx: BuildContext, manager: Manager) -> tuple[str, ...]:
    """Arguments installing everything, devDependencies included, as the lock says."""
    locked = manager.lock is not None
    if manager.name == "npm":
        return ("ci" if locked else "install", *NPM_FLAGS, "--include=dev",
                "--cache", str(ctx.tool_cache("npm-cache")))
    if manager.name == "pnpm":
        return ("install", "--frozen-lockfile" if locked else "--no-frozen-lockfile",
                "--config.confirmModulesPurge=false")
    if manager.berry:
        return ("install", "--immutable" if locked else "--no-immutable")
    return ("install", "--frozen-lockfile" if locked else "--no-lockfile", "--non-interactive",
            "--production=false", "--no-progress")


def prune_args(ctx: BuildContext, manager: Manager) -> tuple[str, ...] | None:
    """Arguments removing devDependencies from an installed tree (None: cannot)."""
    if manager.name == "npm":
        return ("prune", "--omit=dev", "--ignore-scripts", *NPM_FLAGS,
                "--cache", str(ctx.tool_cache("npm-cache")))
    if manager.name == "pnpm":
        return ("prune", "--prod", "--ignore-scripts")
    if manager.berry:
        if int(manager.version.split(".")[0]) < 4:
            return None   # yarn 2 and 3 focus only with their workspace-tools plugin
        return ("workspaces", "focus", "--all", "--production")
    return ("install", "--frozen-lockfile" if manager.lock else "--no-lockfile",
            "--production=true", "--ignore-scripts", "--non-interactive", "--no-progress",
            "--prefer-offline")
