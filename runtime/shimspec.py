"""The shim's spec file: parse and check it into frozen dataclasses.

The runtime daemon writes one JSON spec per instance and starts
`python -m runtime.shim SPEC_PATH`; this module turns that file into a
`ShimSpec` or raises `SpecError` with a one-line reason. Relative paths are
made absolute here because the shim changes its directory to `/`.

It must never start, signal or touch anything: it only reads one file.
"""
import json
import os
import re
from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

from dotcloud.resources import Limits

PROCESS_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")

# Optional numeric fields: name -> (default, smallest allowed value).
NUMBERS = {
    "log_max_bytes": (10 * 1024 * 1024, 1),
    "log_keep": (3, 0),
    "stop_grace": (10.0, 0),
    "backoff_initial": (1.0, 0),
    "backoff_max": (30.0, 0),
    "stable_after": (30.0, 0),
    "crash_loop_restarts": (3, 1),
}
INTEGERS = {"log_max_bytes", "log_keep", "crash_loop_restarts"}


class SpecError(Exception):
    """The spec file is missing or wrong; the message is one line."""


@dataclass(frozen=True)
class ProcessSpec:
    name: str
    argv: tuple[str, ...]
    cwd: str
    env: Mapping[str, str]
    # Where a launcher (runtime.docker_launcher) may write why its process
    # exited ("out of memory (limit 512M)"), which only it can know.
    exit_reason_file: str | None = None


@dataclass(frozen=True)
class CgroupSpec:
    """The instance's cgroup (runtime.cgroups): its data directory, name and limits."""
    data: str
    name: str
    limits: Limits


@dataclass(frozen=True)
class ShimSpec:
    instance: str
    processes: tuple[ProcessSpec, ...]
    log_path: str
    status_path: str
    pid_path: str
    log_max_bytes: int = NUMBERS["log_max_bytes"][0]
    log_keep: int = NUMBERS["log_keep"][0]
    stop_grace: float = NUMBERS["stop_grace"][0]
    backoff_initial: float = NUMBERS["backoff_initial"][0]
    backoff_max: float = NUMBERS["backoff_max"][0]
    stable_after: float = NUMBERS["stable_after"][0]
    crash_loop_restarts: int = NUMBERS["crash_loop_restarts"][0]
    # Where its processes run and under what limits; None: no cgroup.
    cgroup: CgroupSpec | None = None
    # (uid, gid) every process runs as (runtime.privileges); None: the shim's own.
    user: tuple[int, int] | None = None


def load(path: str) -> ShimSpec:
    """Read and check the spec at `path`; raise SpecError saying what is wrong."""
    try:
        with open(path, "rb") as f:
            raw = json.load(f)
    except FileNotFoundError:
        raise SpecError(f"spec file {path} does not exist") from None
    except (OSError, ValueError) as e:
        raise SpecError(f"cannot read spec file {path}: {e}") from None
    return parse(raw)


def parse(raw) -> ShimSpec:
    if not isinstance(raw, dict):
        raise SpecError("spec must be a JSON object")
    fields = {
        "instance": _string(raw, "instance"),
        "processes": _processes(raw.get("processes")),
        "log_path": _path(raw, "log_path"),
        "status_path": _path(raw, "status_path"),
        "pid_path": _path(raw, "pid_path"),
    }
    for name, (default, smallest) in NUMBERS.items():
        fields[name] = _number(raw, name, default, smallest, name in INTEGERS)
    if fields["backoff_max"] < fields["backoff_initial"]:
        raise SpecError("backoff_max must not be smaller than backoff_initial")
    fields["cgroup"] = _cgroup(raw.get("cgroup"))
    fields["user"] = _user(raw.get("user"))
    return ShimSpec(**fields)


def _user(raw) -> tuple | None:
    """[uid, gid], or [uid, gid, tmp, [keep...]] with a private /tmp (runtime.apptmp)."""
    if raw is None:
        return None
    if (not isinstance(raw, list) or len(raw) not in (2, 4)
            or not all(type(v) is int and 0 < v < 2 ** 31 - 1 for v in raw[:2])
            or len(raw) == 4 and not (
                isinstance(raw[2], str) and raw[2].startswith("/") and isinstance(raw[3], list)
                and all(isinstance(k, str) and k and "/" not in k for k in raw[3]))):
        raise SpecError("user must be [uid, gid], two numbers above 0, "
                        "or [uid, gid, tmp directory, [names in /tmp]]")
    if len(raw) == 2:
        return (raw[0], raw[1])
    return (raw[0], raw[1], raw[2], tuple(raw[3]))


def _cgroup(raw) -> CgroupSpec | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise SpecError("cgroup must be an object with data, name and limits")
    limits = raw.get("limits") or {}
    if not isinstance(limits, dict) or not all(
            v is None or (type(v) in (int, float) and v > 0) and (k != "cpus" or v == v)
            for k, v in limits.items()) or set(limits) - {"memory_bytes", "cpus", "processes"}:
        raise SpecError("cgroup.limits must map memory_bytes, cpus, processes to numbers")
    return CgroupSpec(data=_string(raw, "data"), name=_string(raw, "name"),
                      limits=Limits.from_dict(limits))


def _string(raw: dict, key: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value or "\0" in value:
        raise SpecError(f"{key} must be a non-empty string")
    return value


def _path(raw: dict, key: str) -> str:
    return os.path.abspath(_string(raw, key))


def _number(raw: dict, key: str, default, smallest, integer: bool):
    value = raw.get(key, default)
    # bool is an int to Python, never a sensible count or duration here.
    wanted = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, wanted) or value != value:
        raise SpecError(f"{key} must be {'an integer' if integer else 'a number'}")
    if value < smallest:
        raise SpecError(f"{key} must be at least {smallest}")
    return value


def _processes(raw) -> tuple[ProcessSpec, ...]:
    if not isinstance(raw, dict) or not raw:
        raise SpecError("processes must be a non-empty object of name -> process")
    return tuple(_process(name, value) for name, value in sorted(raw.items()))


def _process(name: str, raw) -> ProcessSpec:
    where = f"processes.{name}"
    if not PROCESS_NAME_RE.fullmatch(name):
        raise SpecError(f"{where}: process names are letters, digits, '_', '.', '-'")
    if not isinstance(raw, dict):
        raise SpecError(f"{where} must be an object with argv, cwd and env")
    argv = raw.get("argv")
    if (not isinstance(argv, list) or not argv
            or not all(isinstance(a, str) and "\0" not in a for a in argv) or not argv[0]):
        raise SpecError(f"{where}.argv must be a non-empty list of strings")
    cwd = raw.get("cwd")
    if not isinstance(cwd, str) or not cwd or "\0" in cwd:
        raise SpecError(f"{where}.cwd must be a non-empty string")
    env = raw.get("env", {})
    if not isinstance(env, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and k and "=" not in k
            and "\0" not in k + v for k, v in env.items()):
        raise SpecError(f"{where}.env must map names to strings")
    reason = raw.get("exit_reason_file")
    if reason is not None and (not isinstance(reason, str) or not reason or "\0" in reason):
        raise SpecError(f"{where}.exit_reason_file must be a non-empty string")
    return ProcessSpec(name=name, argv=tuple(argv), cwd=os.path.abspath(cwd),
                       env=MappingProxyType(dict(env)),
                       exit_reason_file=os.path.abspath(reason) if reason else None)
