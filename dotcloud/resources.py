"""A service's resource limits: memory, CPUs, processes (SPEC section 3, `limits:`).

`Limits` is the one frozen value every part reads: the build file's
`limits:` (checked in buildpacks.schema), the platform's `default_limits`
(DATA/config.yml, checked in dotcloud.settings), the instance spec, the
cgroups that enforce them (runtime.cgroups) and the containers (docker).
A field left None is not limited. `parse_limits` checks a plain mapping and
raises ValueError with a one-line reason; the callers put the file and the
line in front of it. Memory is written like `512M` or `1.5G` (powers of
1024, as docker and Kubernetes' Mi/Gi read them) and shown the same way.

A build has limits of its own (`limits: {build: {...}}`, config.yml's
`default_build_limits`), as Heroku gives a build more memory than a dyno: a
TypeScript or webpack build needs a gigabyte or two for a few minutes, the
app it makes a tenth of that for months. `build_limits` says which apply.

It only checks and converts values: it never touches a process or a file.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Mapping

KEYS = ("memory", "cpus", "processes")
# The sub-key of a service's `limits:` holding its build's own limits.
BUILD = "build"
UNITS = {"": 1, "K": 1024, "M": 1024 ** 2, "G": 1024 ** 3, "T": 1024 ** 4}
MEMORY_RE = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*([KMGT]?)(?:i?B|i)?", re.IGNORECASE)
# Below a few MiB a runtime cannot even start; past 1 TiB is a typo.
MIN_MEMORY = 4 * 1024 ** 2
MAX_MEMORY = 1024 ** 4
MIN_CPUS = 0.01
MAX_CPUS = 1024.0
MAX_PROCESSES = 4 * 1024 * 1024


@dataclass(frozen=True)
class Limits:
    memory_bytes: int | None = None
    cpus: float | None = None
    processes: int | None = None

    def over(self, defaults: "Limits | None") -> "Limits":
        """These limits, with the defaults' values where these leave a field unset."""
        if defaults is None:
            return self
        return Limits(*(mine if mine is not None else theirs for mine, theirs in zip(
            (self.memory_bytes, self.cpus, self.processes),
            (defaults.memory_bytes, defaults.cpus, defaults.processes))))

    def at_least(self, other: "Limits") -> "Limits":
        """Field by field the larger of these limits and other's (unset: no limit, the largest)."""
        return Limits(*(None if mine is None or theirs is None else max(mine, theirs)
                        for mine, theirs in zip(
                            (self.memory_bytes, self.cpus, self.processes),
                            (other.memory_bytes, other.cpus, other.processes))))

    @property
    def empty(self) -> bool:
        return self.memory_bytes is None and self.cpus is None and self.processes is None

    def to_dict(self) -> dict:
        """JSON-safe, for the instance spec and `status --json`."""
        return {"memory_bytes": self.memory_bytes, "cpus": self.cpus,
                "processes": self.processes}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> "Limits":
        """The inverse of to_dict; trusts data to_dict wrote (missing keys: unset)."""
        d = d or {}
        return cls(memory_bytes=d.get("memory_bytes"), cpus=d.get("cpus"),
                   processes=d.get("processes"))

    def describe(self) -> str:
        """`memory 512M, cpus 1.5, processes 256` (`no limits` when none is set)."""
        parts = []
        if self.memory_bytes is not None:
            parts.append(f"memory {format_memory(self.memory_bytes)}")
        if self.cpus is not None:
            parts.append(f"cpus {self.cpus:g}")
        if self.processes is not None:
            parts.append(f"processes {self.processes}")
        return ", ".join(parts) or "no limits"


def build_limits(own: Limits, run: Limits, defaults: Limits) -> Limits:
    """The limits a service's build steps run under.

    own: the service's `limits: build:`; run: what its instances get (its
    `limits:` over default_limits); defaults: config.yml's
    default_build_limits. A field `own` leaves unset is the larger of the
    default's and the run limit's: a build never gets less than its app.
    """
    return own.over(defaults.at_least(run))


def format_memory(n: int) -> str:
    """512 MiB -> '512M', 1.5 GiB -> '1536M', 1 GiB -> '1G': the largest exact unit."""
    for unit in ("T", "G", "M", "K"):
        if n >= UNITS[unit] and n % UNITS[unit] == 0:
            return f"{n // UNITS[unit]}{unit}"
    return str(n)


def parse_memory(value: Any) -> int:
    """'512M', '1.5G', '512MiB', 536870912 -> bytes; ValueError saying why not."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError("'memory' must be a size such as 512M or 2G")
    text = str(value).strip()
    match = MEMORY_RE.fullmatch(text)
    if not match:
        raise ValueError(f"'memory' must be a size such as 512M or 2G, not '{text[:40]}'")
    number, unit = match.groups()
    n = int(float(number) * UNITS[unit.upper()])
    if not MIN_MEMORY <= n <= MAX_MEMORY:
        raise ValueError(f"'memory' must be from {format_memory(MIN_MEMORY)} to "
                         f"{format_memory(MAX_MEMORY)}, not {text[:40]}")
    return n


def parse_cpus(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or not MIN_CPUS <= value <= MAX_CPUS:
        raise ValueError(f"'cpus' must be a number of CPUs from {MIN_CPUS:g} to {MAX_CPUS:g}, "
                         "e.g. 1.5")
    return float(value)


def parse_processes(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) \
            or not 1 <= value <= MAX_PROCESSES:
        raise ValueError(f"'processes' must be an integer from 1 to {MAX_PROCESSES}")
    return value


def parse_limits(raw: Any) -> Limits:
    """A mapping like {memory: 512M, cpus: 1.5, processes: 256} -> Limits.

    Raises ValueError (one line) for a value out of range or a key not in
    KEYS; a missing key or a null value leaves that limit unset.
    """
    if raw is None:
        return Limits()
    if not isinstance(raw, Mapping):
        raise ValueError("limits must be a mapping such as {memory: 512M, cpus: 1.5, "
                         "processes: 256}")
    unknown = [str(k) for k in raw if k not in KEYS]
    if unknown:
        raise ValueError(f"unknown limit '{unknown[0][:40]}' (known: {', '.join(KEYS)})")
    get = raw.get
    return Limits(
        memory_bytes=None if get("memory") is None else parse_memory(get("memory")),
        cpus=None if get("cpus") is None else parse_cpus(get("cpus")),
        processes=None if get("processes") is None else parse_processes(get("processes")))
