"""What to build from a pushed tree: its dotcloud.yml, or a service detected.

Without a dotcloud.yml the tree gets one `www` service, typed by the files
it has (requirements.txt or wsgi.py, package.json, index.html), with a
Heroku-style Procfile's processes. With one, a service without `processes`
takes them from a Procfile in its approot. Either way a Procfile's
`release:` line is the service's release command (run once per deploy),
not a process. It only reads files inside the tree, refusing symlinks that
lead out of it, and never runs anything.
"""
from __future__ import annotations

import os
import re
from dataclasses import replace
from pathlib import Path

from .schema import NEED_PROCESSES, PROCESS_RE, parse
from .spec import Buildfile, BuildfileError, ServiceSpec

BUILDFILE = "dotcloud.yml"
PROCFILE = "Procfile"
MAX_FILE_BYTES = 1024 * 1024
PROCFILE_LINE_RE = re.compile(r"([^:\s]+)\s*:\s*(.*)")
RELEASE = "release"     # the Procfile line Heroku runs once per deploy
NO_PROCFILE = ("static", "postgresql", "redis")
NOTHING_TO_DETECT = ("no dotcloud.yml, and nothing to detect: add a dotcloud.yml, "
                     "requirements.txt, package.json or index.html")


def inside(root: Path, rel: str) -> Path | None:
    """root/rel with symlinks resolved, or None when that leads outside root."""
    real_root = os.path.realpath(root)
    real = os.path.realpath(os.path.join(real_root, rel))
    if real != real_root and not real.startswith(real_root + os.sep):
        return None
    return Path(real)


def read_text(root: Path, rel: str) -> str | None:
    """A small text file of the tree, None if absent; refuses escapes and junk."""
    path = root / rel
    if not os.path.lexists(path):
        return None
    real = inside(root, rel)
    if real is None or not real.is_file():
        raise BuildfileError(f"{rel} must be a regular file inside the repository")
    if real.stat().st_size > MAX_FILE_BYTES:
        raise BuildfileError(f"{rel} is larger than {MAX_FILE_BYTES // 1024} KiB")
    data = real.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise BuildfileError(f"{rel} line {line}: not valid UTF-8 text") from None


def parse_procfile(text: str, filename: str = PROCFILE) -> dict[str, str]:
    """Heroku's `name: command` lines; blank lines and # comments skipped."""
    out: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = PROCFILE_LINE_RE.fullmatch(stripped)
        if not match or not match.group(2).strip():
            raise BuildfileError(f"{filename} line {number}: expected 'name: command'")
        name, command = match.group(1), match.group(2).strip()
        if not PROCESS_RE.fullmatch(name):
            raise BuildfileError(f"{filename} line {number}: invalid process name '{name[:60]}': "
                                 "use up to 32 letters, digits, '_' or '-'")
        if name in out:
            raise BuildfileError(f"{filename} line {number}: duplicate process '{name}'")
        if "\x00" in command:
            raise BuildfileError(f"{filename} line {number}: NUL character in command")
        out[name] = command
    return out


def detect_type(tree: Path) -> str | None:
    # Any file of a Python package manager, or of a Django/WSGI app (SPEC 3).
    if any((tree / name).is_file() for name in (
            "requirements.txt", "Pipfile", "Pipfile.lock", "pyproject.toml", "uv.lock",
            "poetry.lock", "manage.py", "wsgi.py")):
        return "python"
    if (tree / "package.json").is_file():
        return "nodejs"
    if (tree / "index.html").is_file():
        return "static"
    return None


def procfile_path(approot: str) -> str:
    return PROCFILE if approot == "." else f"{approot}/{PROCFILE}"


def read_procfile(tree: Path, approot: str = ".") -> tuple[dict[str, str], str | None] | None:
    """The processes and the release command of approot's Procfile; None without one."""
    rel = procfile_path(approot)
    text = read_text(tree, rel)
    if text is None:
        return None
    processes = parse_procfile(text, rel)
    release = processes.pop(RELEASE, None)
    return processes, release


def detect(tree: Path) -> Buildfile:
    """The one `www` service a tree without a build file describes."""
    processes, release = read_procfile(tree) or ({}, None)
    kind = detect_type(tree)
    if kind is None and processes:
        kind = "custom"
    if kind is None:
        raise BuildfileError(NOTHING_TO_DETECT)
    warnings: tuple[str, ...] = ()
    if kind == "static" and (processes or release):
        warnings = (f"{PROCFILE}: ignored for a static site (index.html found)",)
        processes, release = {}, None
    return Buildfile(services={"www": ServiceSpec(name="www", type=kind, processes=processes,
                                                  release=release)},
                     warnings=warnings)


def _has_procfile(tree: Path, approot: str) -> bool:
    return os.path.lexists(tree / procfile_path(approot))


def with_procfiles(tree: Path, buildfile: Buildfile) -> Buildfile:
    """A build file's services completed by their approots' Procfiles: a
    service without `processes` takes the Procfile's, and its `release:`
    line unless the build file says `release` itself."""
    services, warnings = {}, list(buildfile.warnings)
    for name, spec in buildfile.services.items():
        found = read_procfile(tree, spec.approot) if spec.type not in NO_PROCFILE else None
        if found is None:
            services[name] = spec
            continue
        processes, release = found
        rel = procfile_path(spec.approot)
        if spec.processes:
            # Said once, not silently: the build file's processes win.
            warnings.append(f"{rel}: ignored for service '{name}', which has 'processes' "
                            f"in {BUILDFILE}")
            services[name] = spec
            continue
        if not processes and spec.type in NEED_PROCESSES:
            raise BuildfileError(f"{rel}: service '{name}' (type {spec.type}) needs a process "
                                 f"besides '{RELEASE}'")
        services[name] = replace(spec, processes=processes, release=spec.release or release)
    return Buildfile(services=services, warnings=tuple(warnings))


def load_tree(tree: Path) -> Buildfile:
    """The build file of a pushed tree (parsed or detected), approots checked."""
    tree = Path(tree)
    text = read_text(tree, BUILDFILE)
    if text is None:
        buildfile = detect(tree)
    else:
        buildfile = parse(text, BUILDFILE, lambda approot: _has_procfile(tree, approot))
    for spec in buildfile.services.values():
        if spec.type in ("postgresql", "redis"):
            continue
        real = inside(tree, spec.approot)
        if real is None or not real.is_dir():
            raise BuildfileError(f"service '{spec.name}': approot '{spec.approot}' is not a "
                                 "directory in the repository")
    return buildfile if text is None else with_procfiles(tree, buildfile)
