"""npm's version ranges, the part of them `engines` fields use.

`matches("20.11.1", ">=18 <21 || ^22")` says whether a version is in a
range: `||` alternatives of space-separated comparators (`>=`, `>`, `<`,
`<=`, `=`), caret and tilde ranges, x-ranges (`20.x`, `20`, `*`) and
hyphen ranges (`18 - 20`). Prerelease tags are ignored. A range this module
cannot read raises ValueError, so the caller can say so instead of guessing.
This module never runs anything.
"""
from __future__ import annotations

import re

Version = tuple[int, int, int]
# One comparator: an operator and a version ("<" and ">=" are all we need).
Comparator = tuple[str, Version]

PARTIAL_RE = re.compile(
    r"v?(?P<major>\d+|[xX*])(?:\.(?P<minor>\d+|[xX*]))?(?:\.(?P<patch>\d+|[xX*]))?"
    r"(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?")
COMPARATOR_RE = re.compile(r"(?P<op>\^|~>?|>=|<=|>|<|=)?\s*(?P<version>\S+)")
HYPHEN_RE = re.compile(r"(\S+)\s+-\s+(\S+)")
HUGE = 1 << 31


def parse_version(text: str) -> Version:
    """`v20.11.1` or `20.11.1` -> (20, 11, 1)."""
    parts = _partial(text.strip())
    if None in parts:
        raise ValueError(f"not a version: {text!r}")
    return parts  # type: ignore[return-value]


def _partial(text: str) -> tuple[int | None, int | None, int | None]:
    match = PARTIAL_RE.fullmatch(text)
    if not match:
        raise ValueError(f"not a version: {text!r}")
    out: list[int | None] = []
    for name in ("major", "minor", "patch"):
        value = match.group(name)
        # After a wildcard everything is a wildcard: 1.x.3 means 1.x.
        if value is None or not value.isdigit() or (out and out[-1] is None):
            out.append(None)
        else:
            out.append(int(value))
    return out[0], out[1], out[2]


def _floor(p) -> Version:
    return tuple(x or 0 for x in p)  # type: ignore[return-value]


def _next(p) -> Version:
    """The first version above everything the partial p names."""
    major, minor, patch = p
    if major is None:
        return (HUGE, 0, 0)
    if minor is None:
        return (major + 1, 0, 0)
    if patch is None:
        return (major, minor + 1, 0)
    return (major, minor, patch + 1)


def _comparators(op: str, text: str) -> list[Comparator]:
    p = _partial(text)
    major, minor, patch = p
    if op in ("", "="):
        return [(">=", _floor(p)), ("<", _next(p))]
    if op == "^":
        if major is None:
            return [(">=", (0, 0, 0))]
        if major > 0 or minor is None:
            upper = (major + 1, 0, 0)
        elif minor > 0 or patch is None:
            upper = (0, minor + 1, 0)
        else:
            upper = (0, 0, patch + 1)
        return [(">=", _floor(p)), ("<", upper)]
    if op in ("~", "~>"):
        upper = _next((major, minor, None)) if minor is not None else _next(p)
        return [(">=", _floor(p)), ("<", upper)]
    if op == ">=":
        return [(">=", _floor(p))]
    if op == ">":
        return [(">=", _next(p))]
    if op == "<":
        return [("<", _floor(p))]
    if op == "<=":
        return [("<", _next(p))]
    raise ValueError(f"unknown operator {op!r}")


def parse_range(text: str) -> list[list[Comparator]]:
    """The alternatives of a range, each a list of comparators all to be met."""
    alternatives = []
    for alternative in text.split("||"):
        alternative = HYPHEN_RE.sub(lambda m: f">={m.group(1)} <={m.group(2)}", alternative.strip())
        # `>= 18` is `>=18`: glue operators to their versions before splitting.
        alternative = re.sub(r"(\^|~>?|>=|<=|>|<|=)\s+", r"\1", alternative)
        comparators: list[Comparator] = []
        for token in alternative.split() or ["*"]:
            match = COMPARATOR_RE.fullmatch(token)
            if not match:
                raise ValueError(f"not a version range: {text!r}")
            comparators += _comparators(match.group("op") or "", match.group("version"))
        alternatives.append(comparators)
    return alternatives


def matches(version: str | Version, text: str) -> bool:
    """True when version is in the range text (ValueError if either is unreadable)."""
    v = parse_version(version) if isinstance(version, str) else version
    try:
        alternatives = parse_range(text)
    except ValueError:
        raise ValueError(f"not a version range: {text!r}") from None
    return any(all(v >= bound if op == ">=" else v < bound for op, bound in alternative)
               for alternative in alternatives)
