"""Validation of dotcloud.yml text against its schema (SPEC section 3).

The text is composed into YAML nodes, not loaded into Python objects, so
every complaint can name the line it is about: `dotcloud.yml line 5:
service 'www': 'instances' must be an integer from 1 to 20`. Unknown keys
become warnings, never silent. This module only reads the text it is given:
it never touches the filesystem and never runs anything.
"""
from __future__ import annotations

import difflib
import math
import re
from typing import Any, Callable, NoReturn

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from dotcloud import names
from dotcloud.errors import InvalidName
from dotcloud.resources import BUILD as BUILD_LIMITS
from dotcloud.resources import KEYS as LIMIT_KEYS
from dotcloud.resources import Limits, parse_limits

from .spec import TYPES, Buildfile, BuildfileError, Healthcheck, ServiceSpec

MAX_BYTES = 64 * 1024
MAX_CONFIG_NODES = 5000
MAX_CONFIG_DEPTH = 32
MAX_DEPTH = MAX_CONFIG_DEPTH + 8
MAX_INSTANCES = 20
MAX_HEALTH_SECONDS = 3600
SERVICE_KEYS = ("type", "approot", "environment", "requirements", "prebuild", "postbuild",
                "processes", "config", "instances", "healthcheck", "buildscript", "release",
                "limits", "placement")
HEALTHCHECK_KEYS = ("path", "timeout", "interval")
PROCESS_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")
ENV_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
LABEL_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
APPROOT_PART_RE = re.compile(r"[A-Za-z0-9_.@+-]+")
NEED_PROCESSES = ("python-worker", "custom")
DATA_TYPES = ("postgresql", "redis")
PYTHON_TYPES = ("python", "python-worker")
# N.N or N.N.N, integers without leading zeros (Heroku's rule; buildpacks.interpreters).
PYTHON_VERSION_RE = re.compile(r"(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(?:\.(0|[1-9][0-9]*))?")

STR = "tag:yaml.org,2002:str"
INT = "tag:yaml.org,2002:int"
FLOAT = "tag:yaml.org,2002:float"
BOOL = "tag:yaml.org,2002:bool"
NULL = "tag:yaml.org,2002:null"
MERGE = "tag:yaml.org,2002:merge"


def parse(text: str, filename: str = "dotcloud.yml",
          has_procfile: Callable[[str], bool] | None = None) -> Buildfile:
    """Validate the text of a build file; raise BuildfileError naming the line.

    `has_procfile(approot)` says whether a service's approot holds a
    Procfile, which stands in for `processes` (the caller reads it; this
    module reads no files). Without it, no approot has one.
    """
    return _Checker(filename, has_procfile or (lambda approot: False)).check(text)


def _line_of(text: str, position: int) -> int:
    return text.count("\n", 0, max(position, 0)) + 1


class _Checker:
    """One validation pass; collects warnings in order, fails on the first error."""

    def __init__(self, filename: str, has_procfile: Callable[[str], bool]) -> None:
        self.filename = filename
        self.has_procfile = has_procfile
        self.warnings: list[str] = []
        # Only used for its constructor methods (scalar values, merge keys).
        self.loader = yaml.SafeLoader("")

    def fail(self, node: Node, message: str) -> NoReturn:
        raise BuildfileError(f"{self.filename} line {node.start_mark.line + 1}: {message}")

    def warn(self, node: Node, message: str) -> None:
        self.warnings.append(f"{self.filename} line {node.start_mark.line + 1}: {message}")

    # -- the document ------------------------------------------------------

    def check(self, text: str) -> Buildfile:
        if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
            raise BuildfileError(
                f"{self.filename}: the file is larger than {MAX_BYTES // 1024} KiB")
        root = self._compose(text)
        if root is None:
            raise BuildfileError(f"{self.filename} line 1: the file is empty; it must map "
                                 "service names to services")
        pairs = self.pairs(root, "the top level of the file", "mapping of service names")
        if not pairs:
            self.fail(root, "no services defined; map service names to services, "
                            "e.g. 'www: {type: python}'")
        services = {}
        for name, (key, value) in pairs.items():
            try:
                names.service(name)
            except InvalidName as e:
                self.fail(key, str(e))
            services[name] = self.service(name, key, value)
        return Buildfile(services=services, warnings=tuple(self.warnings))

    def _compose(self, text: str) -> Node | None:
        try:
            self._check_depth(text)
            return yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as e:
            mark = e.problem_mark or e.context_mark
            problem = e.problem or e.context or "malformed YAML"
            if e.context and e.problem and not e.context.startswith("while"):
                problem = f"{e.context}, {e.problem}"
            line = mark.line + 1 if mark else 1
            raise BuildfileError(f"{self.filename} line {line}: invalid YAML: {problem}") from None
        except yaml.reader.ReaderError as e:
            char = chr(e.character) if isinstance(e.character, int) else e.character
            raise BuildfileError(
                f"{self.filename} line {_line_of(text, e.position)}: invalid YAML: "
                f"character {char!r} is not allowed") from None
        except yaml.YAMLError as e:  # pragma: no cover - every parser error has a mark
            raise BuildfileError(f"{self.filename}: invalid YAML: {e}") from None

    def _check_depth(self, text: str) -> None:
        """Refuse deep nesting from the event stream, before the (recursive) composer."""
        depth = 0
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
                if depth > MAX_DEPTH:
                    raise BuildfileError(f"{self.filename} line {event.start_mark.line + 1}: "
                                         f"nested too deeply (at most {MAX_DEPTH} levels)")
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1

    # -- generic shapes ----------------------------------------------------

    def pairs(self, node: Node, where: str, what: str = "mapping") -> dict[str, tuple[Node, Node]]:
        """The keys of a mapping node, in order, refusing duplicates; merges `<<`."""
        if not isinstance(node, MappingNode):
            self.fail(node, f"{where} must be a {what}")
        seen: dict[str, Node] = {}
        for key, _ in node.value:
            if key.tag == MERGE:
                continue
            if not isinstance(key, ScalarNode):
                self.fail(key, f"{where}: keys must be plain names")
            if key.value in seen:
                self.fail(key, f"{where}: duplicate key '{key.value}'")
            seen[key.value] = key
        try:
            self.loader.flatten_mapping(node)
        except yaml.MarkedYAMLError as e:
            self.fail(node, f"{where}: {e.problem}")
        out: dict[str, tuple[Node, Node]] = {}
        for key, value in node.value:
            if not isinstance(key, ScalarNode):
                self.fail(key, f"{where}: keys must be plain names")
            out[key.value] = (key, value)
        return out

    def string(self, node: Node, where: str) -> str:
        if not isinstance(node, ScalarNode) or node.tag != STR or not node.value.strip():
            self.fail(node, f"{where} must be a non-empty string")
        if "\x00" in node.value:
            self.fail(node, f"{where} must not contain a NUL character")
        return node.value

    def scalar_text(self, node: Node, where: str) -> str:
        if not isinstance(node, ScalarNode):
            self.fail(node, f"{where} must be a single value, not a list or mapping")
        if "\x00" in node.value:
            self.fail(node, f"{where} must not contain a NUL character")
        return "" if node.tag == NULL else node.value

    def number(self, node: Node, where: str, low: float, high: float) -> float:
        if not isinstance(node, ScalarNode) or node.tag not in (INT, FLOAT):
            self.fail(node, f"{where} must be a number")
        value = float(self.loader.construct_object(node))
        if not (math.isfinite(value) and low < value <= high):
            self.fail(node, f"{where} must be a positive number of seconds up to {high:g}")
        return value

    def unknown(self, key: Node, name: str, known: tuple[str, ...], where: str) -> None:
        hint = difflib.get_close_matches(name, known, n=1)
        more = f"; did you mean '{hint[0]}'?" if hint else ""
        self.warn(key, f"unknown key '{name}' in {where} (ignored){more}")

    # -- a service ---------------------------------------------------------

    def service(self, name: str, key: Node, node: Node) -> ServiceSpec:
        where = f"service '{name}'"
        if isinstance(node, ScalarNode) and node.tag == STR and node.value in TYPES:
            self.fail(node, f"{where} must be a mapping, e.g. '{name}: {{type: {node.value}}}'")
        keys = self.pairs(node, where)
        for k, (knode, _) in keys.items():
            if k not in SERVICE_KEYS:
                self.unknown(knode, k, SERVICE_KEYS, where)
        if "type" not in keys:
            self.fail(key, f"{where}: 'type' is required (one of {', '.join(TYPES)})")
        type_node = keys["type"][1]
        kind = self.string(type_node, f"{where}: 'type'")
        if kind not in TYPES:
            self.fail(type_node, f"{where}: unknown type '{kind}' (expected one of {', '.join(TYPES)})")
        fields: dict[str, Any] = {"name": name, "type": kind}
        for field_name, check in (
                ("approot", self.approot), ("environment", self.environment),
                ("requirements", self.requirements), ("prebuild", self.command),
                ("postbuild", self.command), ("buildscript", self.command),
                ("processes", self.processes), ("config", self.config),
                ("instances", self.instances), ("healthcheck", self.healthcheck),
                ("release", self.command), ("placement", self.placement)):
            if field_name in keys:
                fields[field_name] = check(keys[field_name][1], f"{where}: '{field_name}'")
        if "limits" in keys:
            fields["limits"], fields["build_limits"] = self.limits(keys["limits"][1],
                                                                   f"{where}: 'limits'")
        self.type_rules(kind, where, key, keys, fields)
        return ServiceSpec(**fields)

    def type_rules(self, kind: str, where: str, key: Node, keys: dict, fields: dict) -> None:
        if kind in NEED_PROCESSES and not fields.get("processes") \
                and not self.has_procfile(fields.get("approot", ".")):
            node = keys["processes"][1] if "processes" in keys else key
            self.fail(node, f"{where}: type {kind} needs 'processes' "
                            "(e.g. 'processes: {worker: python worker.py}') or a Procfile "
                            "in its approot")
        if "requirements" in keys and kind not in PYTHON_TYPES:
            self.warn(keys["requirements"][0],
                      f"{where}: 'requirements' is only used by python services (ignored)")
        if "buildscript" in keys and kind != "custom":
            self.warn(keys["buildscript"][0],
                      f"{where}: 'buildscript' is only used by custom services (ignored)")
        if "processes" in keys and kind in ("static", *DATA_TYPES):
            self.warn(keys["processes"][0],
                      f"{where}: 'processes' is not used by {kind} services (ignored)")
        if "release" in keys and kind in DATA_TYPES:
            self.warn(keys["release"][0],
                      f"{where}: 'release' is not used by {kind} services (ignored)")
            del fields["release"]
        if kind == "dockerfile":
            # The Dockerfile builds it all; build hooks would run outside it.
            for name in ("prebuild", "postbuild"):
                if name in keys:
                    self.warn(keys[name][0], f"{where}: '{name}' is not used by dockerfile "
                                             "services (ignored; the Dockerfile's RUN steps are)")
                    fields.pop(name, None)
        if "config" in keys:
            self.python_version(kind, where, keys["config"][1], fields)

    def python_version(self, kind: str, where: str, node: Node, fields: dict) -> None:
        """config 'python_version' kept as written: YAML would read 3.10 as the number 3.1."""
        pairs = self.pairs(node, f"{where}: 'config'")
        if "python_version" not in pairs:
            return
        knode, vnode = pairs["python_version"]
        if kind not in PYTHON_TYPES:
            self.warn(knode, f"{where}: config 'python_version' is only used by python "
                             "services (ignored)")
            return
        text = vnode.value.strip() if isinstance(vnode, ScalarNode) \
            and vnode.tag in (STR, INT, FLOAT) else ""
        if not PYTHON_VERSION_RE.fullmatch(text):
            self.fail(vnode, f"{where}: config 'python_version' must be a Python version such "
                             "as '3.12' or '3.12.1'")
        fields["config"] = {**fields["config"], "python_version": text}

    def approot(self, node: Node, where: str) -> str:
        text = self.string(node, where).strip()
        if text.startswith("/") or text.startswith("~"):
            self.fail(node, f"{where} must be a relative path inside the repository")
        parts = [p for p in text.split("/") if p not in ("", ".")]
        for part in parts:
            if part == "..":
                self.fail(node, f"{where} must not contain '..'")
            if not APPROOT_PART_RE.fullmatch(part):
                self.fail(node, f"{where} may only use letters, digits, '_', '.', '@', '+', "
                                "'-' and '/'")
        return "/".join(parts) or "."

    def environment(self, node: Node, where: str) -> dict[str, str]:
        out = {}
        for name, (knode, vnode) in self.pairs(node, where).items():
            if not ENV_RE.fullmatch(name):
                self.fail(knode, f"{where}: invalid variable name '{name[:60]}': use letters, "
                                 "digits and '_', not starting with a digit")
            if name.upper().startswith("DOTCLOUD_"):
                self.fail(knode, f"{where}: variable '{name}' is reserved (DOTCLOUD_ prefix)")
            # The text as written: 'VERSION: 010' stays "010", not 8.
            out[name] = self.scalar_text(vnode, f"{where}: '{name}'")
        return out

    def requirements(self, node: Node, where: str) -> tuple[str, ...]:
        if not isinstance(node, SequenceNode):
            self.fail(node, f"{where} must be a list of package names")
        out = []
        for item in node.value:
            text = self.scalar_text(item, f"{where}: each item").strip()
            if not text:
                self.fail(item, f"{where}: empty package name")
            if text.startswith("-"):
                # Each requirement is one pip argument: an option here could
                # point pip at another index or a local path.
                self.fail(item, f"{where}: '{text[:60]}' must be a package, not a pip option")
            out.append(text)
        return tuple(out)

    def command(self, node: Node, where: str) -> str:
        return self.string(node, f"{where}").strip()

    def processes(self, node: Node, where: str) -> dict[str, str]:
        out = {}
        for name, (knode, vnode) in self.pairs(node, where).items():
            if not PROCESS_RE.fullmatch(name):
                self.fail(knode, f"{where}: invalid process name '{name[:60]}': use up to 32 "
                                 "letters, digits, '_' or '-'")
            out[name] = self.string(vnode, f"{where}: process '{name}'").strip()
        return out

    def instances(self, node: Node, where: str) -> int:
        if not isinstance(node, ScalarNode) or node.tag != INT:
            self.fail(node, f"{where} must be an integer from 1 to {MAX_INSTANCES}")
        value = self.loader.construct_object(node)
        if not 1 <= value <= MAX_INSTANCES:
            self.fail(node, f"{where} must be an integer from 1 to {MAX_INSTANCES}")
        return value

    def healthcheck(self, node: Node, where: str) -> Healthcheck:
        keys = self.pairs(node, where)
        for k, (knode, _) in keys.items():
            if k not in HEALTHCHECK_KEYS:
                self.unknown(knode, k, HEALTHCHECK_KEYS, where)
        fields: dict[str, Any] = {}
        if "path" in keys:
            pnode = keys["path"][1]
            path = self.string(pnode, f"{where}: 'path'")
            if not path.startswith("/") or any(c.isspace() or ord(c) < 32 for c in path):
                self.fail(pnode, f"{where}: 'path' must start with '/' and contain no spaces")
            fields["path"] = path
        for name in ("timeout", "interval"):
            if name in keys:
                fields[name] = self.number(keys[name][1], f"{where}: '{name}'", 0,
                                           MAX_HEALTH_SECONDS)
        return Healthcheck(**fields)

    def limits(self, node: Node, where: str, nested: bool = False) -> tuple[Limits, Limits]:
        """The service's limits and its build's (the `build:` sub-mapping)."""
        out, build = {}, Limits()
        known = LIMIT_KEYS if nested else (*LIMIT_KEYS, BUILD_LIMITS)
        for name, (knode, vnode) in self.pairs(node, where).items():
            if name == BUILD_LIMITS and not nested:
                if not (isinstance(vnode, ScalarNode) and vnode.tag == NULL):
                    build = self.limits(vnode, f"{where}: '{name}'", nested=True)[0]
                continue
            if name not in known:
                self.unknown(knode, name, known, where)
                continue
            if not isinstance(vnode, ScalarNode) or vnode.tag not in (STR, INT, FLOAT, NULL):
                self.fail(vnode, f"{where}: '{name}' must be a single value")
            out[name] = self.loader.construct_object(vnode)
            try:
                parse_limits({name: out[name]})
            except ValueError as e:
                self.fail(vnode, f"{where}: {e}")
        return parse_limits(out), build

    def placement(self, node: Node, where: str) -> dict[str, str]:
        """Node labels the service's instances must run on (swarm runtime)."""
        out = {}
        for name, (knode, vnode) in self.pairs(node, where).items():
            if not LABEL_RE.fullmatch(name):
                self.fail(knode, f"{where}: invalid node label '{name[:60]}': use letters, "
                                 "digits, '.', '_' and '-'")
            value = self.scalar_text(vnode, f"{where}: '{name}'")
            if not LABEL_RE.fullmatch(value):
                self.fail(vnode, f"{where}: '{name}': invalid label value '{value[:60]}': use "
                                 "letters, digits, '.', '_' and '-'")
            out[name] = value
        return out

    def config(self, node: Node, where: str) -> dict[str, Any]:
        if not isinstance(node, MappingNode):
            self.fail(node, f"{where} must be a mapping")
        budget = [MAX_CONFIG_NODES]
        return self.plain(node, where, budget, 0)

    def plain(self, node: Node, where: str, budget: list[int], depth: int) -> Any:
        """A JSON-safe Python value; the limits stop alias bombs and huge trees."""
        budget[0] -= 1
        if budget[0] < 0:
            self.fail(node, f"{where} is too large (at most {MAX_CONFIG_NODES} values)")
        if depth > MAX_CONFIG_DEPTH:
            self.fail(node, f"{where} is nested too deeply (at most {MAX_CONFIG_DEPTH} levels)")
        if isinstance(node, MappingNode):
            return {k: self.plain(v, where, budget, depth + 1)
                    for k, (_, v) in self.pairs(node, where).items()}
        if isinstance(node, SequenceNode):
            return [self.plain(v, where, budget, depth + 1) for v in node.value]
        if node.tag in (INT, FLOAT, BOOL, NULL):
            value = self.loader.construct_object(node)
            if isinstance(value, float) and not math.isfinite(value):
                self.fail(node, f"{where}: numbers must be finite")
            return value
        return node.value
