"""Which interpreter a build runs: the version an app asks for, among those installed here.

A python service asks for a version in `.python-version` in its approot
(Heroku's form: one line `3.12` or `3.12.1`; lines starting with '#' are
comments), else in `runtime.txt` (`python-3.12` or `python-3.12.1`), else
with `config: {python_version: "3.12"}` in dotcloud.yml, else the platform
default applies: config.yml's `python_version` if the operator set one,
otherwise the interpreter the platform itself runs on (the one builds have
always used, so apps that ask for nothing keep their cached dependencies).

The candidates are CPython interpreters already installed: `python3.X` in
/usr/bin and in the directories of the platform's own PATH (shim
directories excluded: a shim runs whatever version its manager selects),
pyenv's versions directory (`$PYENV_ROOT/versions`, default
`~/.pyenv/versions`, read from its directory names), and the paths listed
in config.yml's `python_interpreters`. `3.13` takes the newest installed
3.13.x; `3.13.0` exactly that. A request nothing matches, a version older
than MIN_PYTHON, and a malformed version are refused with one line naming
the file that asked. Nothing is ever downloaded.

Finding the candidates runs each binary not named by pyenv once
(`-c` printing its version); the answers are kept for the life of the
process, keyed by the binary's inode and mtime, and the whole discovery
while the directories it listed and the binaries it ran are unchanged, so
a build asks nothing twice.

The docker runtime's interpreter is its base image's (config.yml's
`docker_python_image`), whose tag is taken at its word: a request its tag
does not satisfy by the same rule (`python:3.12-slim` serves `3.12`, not
`3.13` nor `3.12.1`) is refused; one image per runtime, not yet one per
requested version. This module never installs anything and never writes a
file.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from dotcloud import logs
from dotcloud.errors import BuildError

from .base import BuildContext
from .detect import read_text
from .schema import PYTHON_VERSION_RE

PYTHON_VERSION_FILE = ".python-version"
RUNTIME_TXT = "runtime.txt"
CONFIG_KEY = "python_version"
SERVICE_CONFIG = f"dotcloud.yml config '{CONFIG_KEY}'"
PLATFORM_CONFIG = f"config.yml '{CONFIG_KEY}'"
PLATFORM_DEFAULT = "the platform default"
# What venv and uv (the host's install engine) still support; Heroku refuses older too.
MIN_PYTHON = (3, 8)
SYSTEM_BIN = "/usr/bin"
RUNTIME_RE = re.compile(r"python-(\S+)")
BINARY_RE = re.compile(r"python3\.[0-9]+")
PYENV_NAME_RE = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+")
# An image tag naming a version: 3.12, 3.12.1, 3.12-slim, 3.12.1-slim-bookworm.
IMAGE_TAG_RE = re.compile(r"([0-9]+\.[0-9]+(?:\.[0-9]+)?)(?:-[A-Za-z0-9_.-]+)?")
PROBE = ("import sys, platform; sys.stdout.write('%s %d.%d.%d\\n' % "
         "((platform.python_implementation(),) + tuple(sys.version_info[:3])))")
PROBE_TIMEOUT = 10.0
PROBE_WORKERS = 4

log = logs.get("interpreters")

Version = tuple[int, ...]


@dataclass(frozen=True)
class Request:
    """A version asked for: `spec` is (3, 12) or (3, 12, 1); `source` is who asked."""

    spec: Version
    source: str

    @property
    def text(self) -> str:
        return dotted(self.spec)


@dataclass(frozen=True)
class Installed:
    """One interpreter found on this host: `version` is always (major, minor, patch)."""

    path: str
    version: Version
    real: str       # the resolved binary: two names for one binary are one candidate


@dataclass(frozen=True)
class Interpreter:
    """The interpreter a build uses, why, and what keys the dependencies it builds."""

    path: str       # absolute path of the binary (in the docker runtime: the image's python3)
    version: str    # "3.12.1" (in the docker runtime: what the image's tag says, or "")
    source: str     # ".python-version", "runtime.txt", ..., "the platform default"
    identity: str   # version and resolved binary (or image id): part of cache keys
    image: str = ""  # the docker runtime's base image holding it

    @property
    def reason(self) -> str:
        return self.source if self.source == PLATFORM_DEFAULT else f"from {self.source}"

    @property
    def summary(self) -> str:
        """The build log's line: which Python, and why."""
        if self.image:
            return f"Using Python {self.version or '3'} of image {self.image} ({self.reason})"
        return f"Using Python {self.version} ({self.reason})"


def dotted(version: Iterable[int]) -> str:
    return ".".join(str(part) for part in version)


def parse_version(text: str, source: str, example: str = "3.12") -> Version:
    """'3.12' -> (3, 12), '3.12.1' -> (3, 12, 1); anything else is refused naming `source`."""
    match = PYTHON_VERSION_RE.fullmatch(text.strip())
    if not match:
        shown = text.strip()[:40]
        raise BuildError(f"{source}: '{shown}' is not a Python version: write one such as "
                         f"{example} or {example}.1")
    return tuple(int(part) for part in match.groups() if part is not None)


def read_python_version_file(text: str) -> Version:
    """The version of a .python-version file: one line, comments on their own lines."""
    lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    if not lines:
        raise BuildError(f"{PYTHON_VERSION_FILE}: no version in the file: write one such as 3.12 "
                         "(lines starting with # are comments)")
    if len(lines) > 1:
        shown = ", ".join(line[:20] for line in lines[:4])
        raise BuildError(f"{PYTHON_VERSION_FILE}: more than one version ({shown}): keep one, "
                         "such as 3.12, and start comment lines with #")
    line = lines[0]
    if line.lower().startswith("python-"):
        raise BuildError(f"{PYTHON_VERSION_FILE}: '{line[:40]}' is not a Python version: write "
                         f"it without 'python-', such as {line[7:][:20] or '3.12'}")
    return parse_version(line, PYTHON_VERSION_FILE)


def read_runtime_txt(text: str) -> Version:
    """The version of a runtime.txt file: `python-3.12` or `python-3.12.1`."""
    match = RUNTIME_RE.fullmatch(text.strip())
    if not match:
        shown = " ".join(text.split())[:40]
        raise BuildError(f"{RUNTIME_TXT}: '{shown}' is not a Python version: write one such as "
                         "python-3.12 or python-3.12.1")
    return parse_version(match.group(1), RUNTIME_TXT, "python-3.12")


def requested_python(src: Path, config: Mapping, default: str = "") -> Request | None:
    """What the service at `src` asks for, in precedence order; None: the platform's own."""
    text = read_text(src, PYTHON_VERSION_FILE)
    if text is not None:
        return Request(read_python_version_file(text), PYTHON_VERSION_FILE)
    text = read_text(src, RUNTIME_TXT)
    if text is not None:
        return Request(read_runtime_txt(text), RUNTIME_TXT)
    value = config.get(CONFIG_KEY)
    if value is not None:
        return Request(parse_version(str(value), SERVICE_CONFIG), SERVICE_CONFIG)
    if default:
        return Request(parse_version(str(default), PLATFORM_CONFIG), PLATFORM_CONFIG)
    return None


def choose(request: Request, installed: Sequence[Installed]) -> Installed:
    """The newest installed match of `request` (the first found among equals), or a refusal."""
    usable = sorted({i.version for i in installed if i.version[:2] >= MIN_PYTHON})
    listed = ", ".join(dotted(v) for v in usable) or "none"
    if request.spec[:2] < MIN_PYTHON:
        raise BuildError(f"{request.source} asks for Python {request.text}, which is not "
                         f"supported: {dotted(MIN_PYTHON)} or newer is needed "
                         f"(installed: {listed})")
    matches = [i for i in installed if i.version[:len(request.spec)] == request.spec]
    if not matches:
        raise BuildError(f"{request.source} asks for Python {request.text}, which is not "
                         f"installed here (installed: {listed})")
    newest = max(i.version for i in matches)
    return next(i for i in matches if i.version == newest)


def image_version(image: str) -> Version | None:
    """The version an image's tag names: 'python:3.12-slim' -> (3, 12); None if it names none."""
    name, _, tag = image.rpartition(":")
    match = IMAGE_TAG_RE.fullmatch(tag) if name and "/" not in tag else None
    return tuple(int(part) for part in match.group(1).split(".")) if match else None


def image_serves(image: str, request: Request | None) -> str:
    """The version the docker runtime's base image offers, its tag as the contract;
    a request the tag does not satisfy (same rule as on the host) is refused."""
    have = image_version(image)
    if request is not None and (have is None or have[:len(request.spec)] != request.spec):
        raise BuildError(f"{request.source} asks for Python {request.text}, which the docker "
                         f"runtime's base image {image} does not provide (set "
                         "docker_python_image in config.yml to an image of that version)")
    return dotted(have) if have else ""


# -- finding what is installed ---------------------------------------------

_probed: dict[tuple, Version | None] = {}
_probe_lock = threading.Lock()


def probe(path: str) -> Version | None:
    """The CPython version of the binary at `path`, by running it once; None if it is not one."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    key = (path, st.st_dev, st.st_ino, st.st_mtime_ns)
    with _probe_lock:
        if key in _probed:
            return _probed[key]
    version = _run_probe(path)
    with _probe_lock:
        _probed[key] = version
    return version


def _run_probe(path: str) -> Version | None:
    try:
        out = subprocess.run([path, "-I", "-c", PROBE], capture_output=True, text=True,
                             timeout=PROBE_TIMEOUT, stdin=subprocess.DEVNULL,
                             env={"PATH": os.defpath, "LANG": "C.UTF-8"})
    except (OSError, subprocess.SubprocessError) as e:
        log.warning("interpreter_probe_failed", path=path, error=str(e))
        return None
    parts = out.stdout.split()
    if out.returncode != 0 or len(parts) != 2 or parts[0] != "CPython":
        log.info("interpreter_skipped", path=path, status=out.returncode,
                 answer=out.stdout.strip()[:80])
        return None
    return tuple(int(p) for p in parts[1].split("."))


def _executable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def path_dirs(path_env: str) -> list[str]:
    """The PATH's absolute directories and /usr/bin, shim directories left out."""
    return [d for d in dict.fromkeys([*path_env.split(os.pathsep), SYSTEM_BIN])
            if d.startswith("/") and Path(d).name != "shims"]


def path_binaries(path_env: str) -> list[str]:
    """`python3.X` files in /usr/bin and the PATH's directories, shim directories skipped."""
    found = []
    for directory in path_dirs(path_env):
        try:
            names = sorted(os.listdir(directory))
        except OSError:
            continue
        found += [os.path.join(directory, n) for n in names
                  if BINARY_RE.fullmatch(n) and _executable(os.path.join(directory, n))]
    return found


def pyenv_interpreters(root: Path) -> list[Installed]:
    """pyenv's versions/N.N.N/bin/python3, versioned by the directory's name (not run)."""
    versions = root / "versions"
    try:
        names = os.listdir(versions)
    except OSError:
        return []
    out = []
    for name in names:
        binary = versions / name / "bin" / "python3"
        if PYENV_NAME_RE.fullmatch(name) and _executable(str(binary)):
            out.append(Installed(str(binary), tuple(int(p) for p in name.split(".")),
                                 os.path.realpath(binary)))
    return sorted(out, key=lambda i: i.version)


def pyenv_root(environ: Mapping[str, str]) -> Path:
    root = environ.get("PYENV_ROOT")
    return Path(root) if root else Path(os.path.expanduser("~")) / ".pyenv"


_found: dict[tuple, tuple[tuple, list[Installed]]] = {}


def _stamp(path: str) -> tuple:
    try:
        st = os.stat(path)
    except OSError:
        return ()
    return st.st_dev, st.st_ino, st.st_mtime_ns


def discover(extra: Sequence[str] = (), *, environ: Mapping[str, str] | None = None,
             own: bool = True) -> list[Installed]:
    """Every CPython installed here, in order of preference among equal versions:
    config.yml's list, the platform's own, PATH and /usr/bin, pyenv's.

    Kept while nothing it looked at changed (the directories it listed, the
    binaries it ran): a build asks several times, and then pays a few stat calls.
    """
    environ = os.environ if environ is None else environ
    root = pyenv_root(environ)
    key = (tuple(extra), environ.get("PATH", ""), str(root), own)
    with _probe_lock:
        kept = _found.get(key)
    if kept is not None and all(_stamp(path) == stamp for path, stamp in kept[0]):
        return list(kept[1])
    watched = [*path_dirs(environ.get("PATH", "")), str(root / "versions")]
    stamps = [(path, _stamp(path)) for path in watched]
    found, ran = _scan(extra, environ, own, root)
    stamps += [(path, _stamp(path)) for path in ran]
    with _probe_lock:
        _found[key] = (tuple(stamps), found)
    return list(found)


def _scan(extra: Sequence[str], environ: Mapping[str, str], own: bool,
          root: Path) -> tuple[list[Installed], list[str]]:
    """(what is installed, the binaries run or looked for to know it)."""
    named = [os.path.abspath(os.path.expanduser(p)) for p in extra]
    ran = list(named)
    for path in named:
        if not _executable(path):
            log.warning("interpreter_missing", path=path, setting="python_interpreters")
    named = [p for p in named if _executable(p)]
    on_path = path_binaries(environ.get("PATH", ""))
    ran += on_path
    with ThreadPoolExecutor(max_workers=PROBE_WORKERS) as pool:
        named_versions = list(pool.map(probe, named))
        path_versions = list(pool.map(probe, on_path))
    found = [Installed(p, v, os.path.realpath(p)) for p, v in zip(named, named_versions) if v]
    if own:
        found.append(Installed(sys.executable, tuple(sys.version_info[:3]),
                               os.path.realpath(sys.executable)))
    found += [Installed(p, v, os.path.realpath(p)) for p, v in zip(on_path, path_versions) if v]
    found += pyenv_interpreters(root)
    unique: dict[str, Installed] = {}
    for item in found:
        unique.setdefault(item.real, item)
    return list(unique.values()), ran


def own_identity() -> str:
    """What keys the cache of dependencies built with the platform's own interpreter."""
    return f"{sys.version}\n{Path(sys.executable).resolve()}"


def own_interpreter(source: str = PLATFORM_DEFAULT) -> Interpreter:
    """The interpreter the platform runs on, as builds used before any request."""
    return Interpreter(path=sys.executable, version=dotted(sys.version_info[:3]), source=source,
                       identity=own_identity())


def python_for(ctx: BuildContext) -> Interpreter:
    """The interpreter building and running `ctx`'s service (see the module doc)."""
    request = requested_python(ctx.src, ctx.service.config, ctx.python_version)
    if not ctx.executor.on_host:
        # The base image holds the interpreter; its id keys the cache.
        image = getattr(ctx.executor, "image", "")
        return Interpreter(path=ctx.executor.python, version=image_serves(image, request),
                           source=request.source if request else PLATFORM_DEFAULT,
                           identity=ctx.executor.identity, image=image)
    if request is None:
        return own_interpreter()
    chosen = choose(request, discover(ctx.python_interpreters))
    if chosen.real == os.path.realpath(sys.executable):
        # The same cache key as a build that asked for nothing.
        return own_interpreter(request.source)
    return Interpreter(path=chosen.path, version=dotted(chosen.version), source=request.source,
                       identity=f"{dotted(chosen.version)}\n{chosen.real}")
