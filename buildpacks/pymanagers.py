"""Which Python package manager a service uses, and what it installs.

Exactly one per service, told by the files of its approot as Heroku's
python buildpack tells it (its lib/package_manager.sh):

- requirements.txt: pip's format, as is (with the files it includes);
- Pipfile.lock: its `default` packages, exactly, hashes checked. A Pipfile
  without its lock is refused, and so is a lock whose `_meta.hash` is not
  the Pipfile's as pipenv computes it (with names as written, or
  normalized as newer pipenv does; a Pipfile without `[[source]]` is
  compared with the sources its lock recorded);
- poetry.lock (with its pyproject.toml): the project's main dependencies,
  every package held at the version the lock pins; a main dependency the
  lock lacks means the lock is stale, and is refused;
- uv.lock (with its pyproject.toml): what `uv export --locked` lists,
  exactly, hashes checked (a stale lock is refused by uv);
- pyproject.toml alone, with a `[project]` table: its PEP 621
  `dependencies`. Heroku refuses this case; here it installs what a
  requirements.txt of those lines would.

Dev dependencies (Pipfile `dev-packages`, poetry groups other than main,
uv's default groups) are not installed, as on Heroku. The project itself is
not installed either: its code runs from approot, which is the working
directory of every process. Two managers' files in one service are refused,
naming them. A manager whose packages come from the tree itself (local
paths, editables) is `local`: its virtualenv cannot be shared between
releases. This module only reads files; it never runs anything.
"""
from __future__ import annotations

import configparser
import hashlib
import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

from dotcloud.errors import BuildError

from .base import base_env
from .detect import read_text
from .uvtool import pip_config_files

REQUIREMENTS = "requirements.txt"
PIPFILE = "Pipfile"
PIPFILE_LOCK = "Pipfile.lock"
POETRY_LOCK = "poetry.lock"
UV_LOCK = "uv.lock"
PYPROJECT = "pyproject.toml"
# Pipfile sections plette hashes under other names, or not at all.
PIPFILE_SECTIONS = frozenset({"source", "packages", "dev-packages", "requires", "scripts",
                              "pipfile", "pipenv", "default", "develop"})
NAME_RE = re.compile(r"\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)")
LOCAL_RE = re.compile(r"^(?:-e|--editable)\b|^\.{1,2}(?:/|$)|^/|^file:|@\s*file:")


@dataclass(frozen=True)
class Manager:
    name: str                   # pip, pipenv, poetry, uv, pyproject; "" when there is none
    inputs: tuple[str, ...]     # (file, text, ...) whose content decides what is installed
    local: bool = False
    # A requirements list made from the manager's files; None for pip (its
    # own file is used as is) and uv (`uv export` makes it at build time).
    requirements: str | None = None
    exact: bool = False         # the list is the whole closure: installed without resolving
    constraints: str = ""       # pins held while resolving the rest

    @property
    def label(self) -> str:
        return {"pip": REQUIREMENTS, "pipenv": PIPFILE_LOCK, "poetry": POETRY_LOCK,
                "uv": UV_LOCK, "pyproject": PYPROJECT}.get(self.name, "")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _list(names: list[str]) -> str:
    return ", ".join(names[:-1]) + " and " + names[-1]


def detect(src: Path, environ: Mapping[str, str] | None = None) -> Manager:
    """The service's one package manager; BuildError for what Heroku refuses too.

    environ: the build's (its pip settings matter to a Pipfile's hash).
    """
    found = []
    if (src / PIPFILE_LOCK).exists():
        found.append(PIPFILE_LOCK)
    elif (src / PIPFILE).exists():
        raise BuildError(f"{PIPFILE}: no {PIPFILE_LOCK} beside it; run 'pipenv lock' "
                         f"and commit {PIPFILE_LOCK}")
    found += [name for name in (REQUIREMENTS, POETRY_LOCK, UV_LOCK) if (src / name).exists()]
    if len(found) > 1:
        raise BuildError(f"{_list(found)}: several package managers in one service; "
                         "keep the files of only one")
    if not found:
        return _pyproject_alone(src)
    if found[0] == PIPFILE_LOCK:
        return _pipenv(src, base_env() if environ is None else environ)
    return {REQUIREMENTS: _pip, POETRY_LOCK: _poetry, UV_LOCK: _uv}[found[0]](src)


def _pip(src: Path) -> Manager:
    # python.requirement_files reads the file and what it includes.
    return Manager("pip", ())


def _toml(src: Path, rel: str) -> tuple[str, dict]:
    text = read_text(src, rel)
    if text is None:
        raise BuildError(f"{rel}: missing")
    try:
        return text, tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise BuildError(f"{rel}: not valid TOML: {e}") from None


def _needs_pyproject(src: Path, lock: str) -> tuple[str, dict]:
    if not (src / PYPROJECT).exists():
        raise BuildError(f"{lock}: no {PYPROJECT} beside it")
    return _toml(src, PYPROJECT)


# --- Pipfile.lock ----------------------------------------------------------

def pip_conf_sources(environ: Mapping[str, str]) -> tuple[list[dict], list[dict]]:
    """The sources pipenv makes of pip's index-url and extra-index-url settings
    (its project.py), as (index sources, extra index sources)."""
    merged: dict[str, str] = {}
    for path in pip_config_files(environ):
        parser = configparser.RawConfigParser()
        try:
            parser.read(path)
        except (configparser.Error, OSError, UnicodeDecodeError):
            continue
        for section in parser.sections():
            for key, value in parser.items(section):
                merged[f"{section}.{key.replace('_', '-')}"] = value
    for name, value in environ.items():
        if name.startswith("PIP_"):
            merged[f":env:.{name[4:].lower().replace('_', '-')}"] = value
    indexes, extras = [], []
    for key, value in merged.items():
        section, _, option = key.partition(".")
        trusted = (merged.get(f"{section}.trusted-host") or "").split()
        if option == "index-url":
            indexes.append({"url": value, "name": f"pip_conf_index_{section}",
                            "verify_ssl": not any(t in value for t in trusted)
                            and "https://" in value})
        elif option == "extra-index-url":
            urls = value.split()
            for i, url in enumerate(urls):
                suffix = f"_{i}" if len(urls) > 1 else ""
                extras.append({"url": url, "name": f"pip_conf_extra_index_{section}{suffix}",
                               "verify_ssl": not any(t in url for t in trusted)
                               and "https://" in url})
    return indexes, extras


def pipfile_hashes(pipfile: dict, lock_sources: list,
                   environ: Mapping[str, str] = MappingProxyType({})) -> set[str]:
    """The `_meta.hash.sha256` pipenv may have written for this Pipfile.

    plette's form, and newer pipenv's with package names normalized. A
    Pipfile without `[[source]]` is hashed with the sources pipenv put in
    its place: its default (recorded first in the lock) alone, or followed
    by those newer pipenv makes of the pip configuration (this machine's).
    """
    candidates = [pipfile["source"]] if "source" in pipfile else [lock_sources]
    if "source" not in pipfile and lock_sources:
        indexes, extras = pip_conf_sources(environ)
        default = lock_sources[0]
        candidates.append([default] + [i for i in indexes if i["url"] != default.get("url")]
                          + extras)
    return {digest for sources in candidates for digest in _pipfile_hashes(pipfile, sources)}


def _pipfile_hashes(pipfile: dict, sources: list) -> set[str]:
    def data(names) -> dict:
        out = {"_meta": {"sources": sources,
                         "requires": pipfile.get("requires", {})},
               "default": names(pipfile.get("packages", {})),
               "develop": names(pipfile.get("dev-packages", {}))}
        for category, values in pipfile.items():
            if category not in PIPFILE_SECTIONS:
                out[category] = names(values)
        return out

    def normalized(section):
        return {canonical(k): v for k, v in section.items()} if isinstance(section, dict) \
            else section
    return {hashlib.sha256(json.dumps(data(names), sort_keys=True, separators=(",", ":"))
                           .encode()).hexdigest() for names in (lambda s: s, normalized)}


def _pipenv(src: Path, environ: Mapping[str, str]) -> Manager:
    text = read_text(src, PIPFILE_LOCK) or ""
    try:
        lock = json.loads(text)
    except ValueError as e:
        raise BuildError(f"{PIPFILE_LOCK}: not valid JSON: {e}") from None
    meta = lock.get("_meta") if isinstance(lock, dict) else None
    default = lock.get("default", {}) if isinstance(lock, dict) else None
    if not isinstance(meta, dict) or not isinstance(default, dict) \
            or not all(isinstance(v, dict) for v in default.values()):
        raise BuildError(f"{PIPFILE_LOCK}: not a Pipfile.lock ('_meta' and 'default' "
                         "tables expected)")
    if not (src / PIPFILE).exists():
        raise BuildError(f"{PIPFILE_LOCK}: no {PIPFILE} beside it")
    _, pipfile = _toml(src, PIPFILE)
    recorded = (meta.get("hash") or {}).get("sha256") if isinstance(meta.get("hash"), dict) \
        else None
    sources = meta.get("sources") if isinstance(meta.get("sources"), list) else []
    if recorded not in pipfile_hashes(pipfile, sources, environ):
        raise BuildError(f"{PIPFILE_LOCK} is out of date with {PIPFILE} (its _meta hash "
                         "differs); run 'pipenv lock' and commit it")
    hashed = all(entry.get("hashes") for entry in default.values())
    lines, local = [], False
    for name, entry in sorted(default.items()):
        extras = f"[{','.join(entry['extras'])}]" if entry.get("extras") else ""
        if "version" in entry:
            line = f"{name}{extras}{entry['version']}"
        elif "git" in entry:
            ref = f"@{entry['ref']}" if entry.get("ref") else ""
            line = f"{name}{extras} @ git+{entry['git']}{ref}"
        elif "path" in entry or "file" in entry:
            where = entry.get("path") or entry["file"]
            if LOCAL_RE.search(where) or not re.match(r"[a-z+]+://", where):
                local = True
                where = str((src / where).resolve()) if not where.startswith("file:") else where
                line = f"-e {where}" if entry.get("editable") else f"{name}{extras} @ " \
                    f"{Path(where).as_uri() if where.startswith('/') else where}"
            else:
                line = f"{name}{extras} @ {where}"
        else:
            line = f"{name}{extras}"
        if entry.get("markers") and not line.startswith("-e"):
            line += f" ; {entry['markers']}"
        if hashed:
            line += "".join(f" --hash={h}" for h in entry["hashes"])
        lines.append(line)
    requirements = "\n".join(lines) + "\n"
    return Manager("pipenv", (PIPFILE_LOCK, text), local, requirements, exact=True,
                   constraints=pins(requirements))


# --- poetry.lock -----------------------------------------------------------

def _poetry_roots(pyproject: dict) -> list[str]:
    """The main dependencies, as requirement lines (versions left to the lock)."""
    project = pyproject.get("project") or {}
    if isinstance(project.get("dependencies"), list):
        return [str(d) for d in project["dependencies"]]
    deps = ((pyproject.get("tool") or {}).get("poetry") or {}).get("dependencies") or {}
    roots = []
    for name, spec in deps.items():
        if canonical(name) == "python":
            continue
        extras, marker = "", ""
        if isinstance(spec, dict):
            if spec.get("optional"):
                continue    # only through an extra of the project, which is not installed
            if spec.get("path"):
                roots.append(f"{name} @ {spec['path']}")
                continue
            if spec.get("extras"):
                extras = f"[{','.join(spec['extras'])}]"
            if spec.get("markers"):
                marker = f" ; {spec['markers']}"
        roots.append(f"{name}{extras}{marker}")
    return roots


def _poetry(src: Path) -> Manager:
    text, lock = _toml(src, POETRY_LOCK)
    project_text, pyproject = _needs_pyproject(src, POETRY_LOCK)
    packages = lock.get("package", [])
    if not isinstance(packages, list) or not all(
            isinstance(p, dict) and isinstance(p.get("name"), str) and "version" in p
            for p in packages):
        raise BuildError(f"{POETRY_LOCK}: not a poetry lock ('[[package]]' entries with a "
                         "name and a version expected)")
    pinned, local = [], False
    for package in packages:
        name, version = package["name"], package["version"]
        source = package.get("source") or {}
        kind = source.get("type")
        if kind in ("directory", "file"):
            local = True
        elif kind == "git":
            ref = source.get("resolved_reference") or source.get("reference") or ""
            sub = f"#subdirectory={source['subdirectory']}" if source.get("subdirectory") else ""
            pinned.append(f"{name} @ git+{source['url']}@{ref}{sub}")
        elif kind == "url":
            pinned.append(f"{name} @ {source['url']}")
        else:
            pinned.append(f"{name}=={version}")
    locked = {canonical(p["name"]) for p in packages}
    roots = _poetry_roots(pyproject)
    for root in roots:
        match = NAME_RE.match(root)
        if LOCAL_RE.search(root) or " @ ." in root or " @ /" in root:
            local = True
        elif match and canonical(match.group(1)) not in locked:
            raise BuildError(f"{POETRY_LOCK} is out of date with {PYPROJECT}: "
                             f"'{match.group(1)}' is not in it; run 'poetry lock' and commit it")
    return Manager("poetry", (POETRY_LOCK, text, PYPROJECT, project_text), local,
                   "\n".join(roots) + "\n", exact=False, constraints="\n".join(pinned) + "\n")


# --- uv.lock ---------------------------------------------------------------

def _uv(src: Path) -> Manager:
    text, lock = _toml(src, UV_LOCK)
    project_text, _ = _needs_pyproject(src, UV_LOCK)
    packages = lock.get("package", [])
    if not isinstance(packages, list) or not all(isinstance(p, dict) for p in packages):
        raise BuildError(f"{UV_LOCK}: not a uv lock ('[[package]]' entries expected)")
    local = False
    for package in packages:
        source = package.get("source") or {}
        for kind in ("editable", "path", "directory"):
            # "." is the project itself, which is not installed.
            if kind in source and source[kind] != ".":
                local = True
    return Manager("uv", (UV_LOCK, text, PYPROJECT, project_text), local, exact=True)


# --- pyproject.toml alone ----------------------------------------------------

def _pyproject_alone(src: Path) -> Manager:
    if not (src / PYPROJECT).exists():
        return Manager("", ())
    text, pyproject = _toml(src, PYPROJECT)
    project = pyproject.get("project")
    if not isinstance(project, dict):
        return Manager("", ())      # tool settings only: nothing to install
    if "dependencies" in (project.get("dynamic") or []):
        raise BuildError(f"{PYPROJECT}: its dependencies are dynamic; list them in "
                         "[project] dependencies, or add a requirements.txt or a lock file")
    deps = project.get("dependencies", [])
    if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
        raise BuildError(f"{PYPROJECT}: [project] dependencies must be a list of strings")
    requirements = "\n".join(deps) + "\n"
    return Manager("pyproject", (PYPROJECT, requirements),
                   any(LOCAL_RE.search(d) for d in deps), requirements)


# --- requirement lists ----------------------------------------------------------

def logical_lines(text: str) -> list[str]:
    """A requirements file's lines with continuations joined, comments dropped."""
    out, current = [], ""
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        if current.strip():
            out.append(current.strip())
        current = ""
    if current.strip():
        out.append(current.strip())
    return out


def pins(requirements: str) -> str:
    """A lock's requirement lines as constraints: without hashes, editables or paths."""
    out = []
    for line in logical_lines(requirements):
        line = re.sub(r"\s--hash[= ]\S+", "", line).strip()
        if line.startswith("-") or LOCAL_RE.search(line):
            continue
        out.append(line)
    return "\n".join(out) + "\n"
