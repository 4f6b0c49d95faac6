"""uv, the engine python builds install with: its binary, and this machine's pip settings for it.

uv installs the same pins as pip in about half its time (docs/benchmarks.rst),
but reads none of pip's configuration. `uv_env` translates it: the pip.conf
files pip itself would read (global, user, site, then `PIP_CONFIG_FILE`;
`[global]` then `[install]` of each, later ones winning) and the `PIP_*`
variables of the build's environment, which win over every file. So a
mirror, an extra index, a wheel directory, a certificate or a constraints
file configured for pip on this machine is used by uv as well; no registry
host is ever named here. `unsafe-best-match` makes uv pick among several
indexes as pip does (the best version from any of them) instead of
stopping at the first index that knows a name. Variables already set for
uv in the environment are kept as they are.

The binary is the one the `uv` package installed beside the platform's own
interpreter, never one found on the operator's PATH. This module never
runs anything.
"""
from __future__ import annotations

import configparser
import os
import sys
from pathlib import Path
from typing import Mapping

from dotcloud.errors import BuildError

# pip setting -> (uv variable, how several values are joined); None: a flag.
SETTINGS = {
    "index-url": ("UV_DEFAULT_INDEX", " "),
    "extra-index-url": ("UV_EXTRA_INDEX_URL", " "),
    "find-links": ("UV_FIND_LINKS", ","),
    "trusted-host": ("UV_INSECURE_HOST", " "),
    "constraint": ("UV_CONSTRAINT", " "),
    "cert": ("SSL_CERT_FILE", " "),
    "client-cert": ("SSL_CLIENT_CERT", " "),
    "timeout": ("UV_HTTP_TIMEOUT", " "),
    "default-timeout": ("UV_HTTP_TIMEOUT", " "),
    "proxy": ("HTTPS_PROXY", " "),
    "no-index": ("UV_NO_INDEX", None),
    "pre": ("UV_PRERELEASE", None),
}
INDEX_VARIABLES = frozenset({"UV_DEFAULT_INDEX", "UV_INDEX_URL", "UV_EXTRA_INDEX_URL",
                             "UV_FIND_LINKS", "UV_NO_INDEX", "UV_CONSTRAINT",
                             "UV_INDEX_STRATEGY", "UV_PRERELEASE"})
SECTIONS = ("global", "install")
TRUE = ("1", "true", "yes", "on")
FIXED = {
    # pip's choice among several indexes: the best version wherever it is.
    "UV_INDEX_STRATEGY": "unsafe-best-match",
    # Only the interpreter the build chose; never one uv would download.
    "UV_PYTHON_DOWNLOADS": "never",
    "UV_NO_MANAGED_PYTHON": "1",
    # pip compiles bytecode as it installs; the venv must be the same.
    "UV_COMPILE_BYTECODE": "1",
    "UV_NO_PROGRESS": "1",
}


def uv_binary() -> str:
    """The uv installed with the platform (setup.cfg), not one on the PATH."""
    try:
        import uv
        path = uv.find_uv_bin()
    except (ImportError, FileNotFoundError):
        path = str(Path(sys.executable).parent / "uv")
    if not os.access(path, os.X_OK):
        raise BuildError("uv is not installed with the platform: pip install uv "
                         "into its virtualenv")
    return path


def pip_config_files(environ: Mapping[str, str]) -> list[Path]:
    """The files pip reads, lowest precedence first (pip's own order)."""
    env_file = environ.get("PIP_CONFIG_FILE")
    if env_file == os.devnull:
        return []
    xdg_dirs = environ.get("XDG_CONFIG_DIRS") or "/etc/xdg"
    files = [Path(d) / "pip" / "pip.conf" for d in xdg_dirs.split(":") if d]
    files.append(Path("/etc/pip.conf"))
    home = Path(environ.get("HOME") or Path.home())
    files.append(home / ".pip" / "pip.conf")
    files.append(Path(environ.get("XDG_CONFIG_HOME") or home / ".config") / "pip" / "pip.conf")
    files.append(Path(sys.prefix) / "pip.conf")
    if env_file:
        files.append(Path(env_file))
    return files


def pip_settings(environ: Mapping[str, str]) -> dict[str, str]:
    """pip's effective settings that uv has a counterpart for."""
    found: dict[str, str] = {}
    for path in pip_config_files(environ):
        parser = configparser.RawConfigParser()
        try:
            parser.read(path)
        except (configparser.Error, OSError, UnicodeDecodeError):
            continue    # pip would refuse it too; installs then say why
        for section in SECTIONS:
            if parser.has_section(section):
                for key, value in parser.items(section):
                    key = key.replace("_", "-")
                    if key in SETTINGS:
                        found[key] = value
    for name, value in environ.items():
        if name.startswith("PIP_"):
            key = name[4:].lower().replace("_", "-")
            if key in SETTINGS:
                found[key] = value
    return found


def lock_check_env(environ: Mapping[str, str], cache_dir: Path) -> dict[str, str]:
    """uv_env without the choice of indexes, for `uv export --locked`.

    uv counts the indexes configured where it runs as inputs of the lock: a
    wheel directory or mirror configured on this server, and not where the
    lock was made, would make every lock stale. The lock is checked against
    its pyproject.toml only.
    """
    return {k: v for k, v in uv_env(environ, cache_dir).items() if k not in INDEX_VARIABLES}


def uv_env(environ: Mapping[str, str], cache_dir: Path) -> dict[str, str]:
    """Variables to add to a build's environment so uv acts as pip would here."""
    out: dict[str, str] = {"UV_CACHE_DIR": str(cache_dir), **FIXED}
    for key, value in pip_settings(environ).items():
        variable, joiner = SETTINGS[key]
        if joiner is None:
            if value.strip().lower() in TRUE:
                out[variable] = "allow" if key == "pre" else "1"
        elif value.split():
            out[variable] = joiner.join(value.split())
    return {k: v for k, v in out.items() if k not in environ or k == "UV_CACHE_DIR"}
