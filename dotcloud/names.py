"""Validation of every name a user can send us, before any path is built.

Nothing here touches the filesystem; callers build paths only from names
that passed these checks.
"""
import re

from .errors import InvalidName

APP_RE = re.compile(r"[a-z][a-z0-9-]{0,39}")
SERVICE_RE = re.compile(r"[a-z][a-z0-9_]{0,31}")
USER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
VAR_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
DOMAIN_RE = re.compile(
    r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+")


def _show(value) -> str:
    text = value if isinstance(value, str) else repr(value)
    text = text.encode("unicode_escape").decode("ascii")
    return text if len(text) <= 60 else text[:57] + "..."


def app_from_path(path: str) -> str:
    """'myapp', '/myapp', 'myapp.git', '~/myapp' name the same app."""
    name = path.strip()
    if name.startswith("~/"):
        name = name[2:]
    name = name.lstrip("/")
    if name.endswith(".git"):
        name = name[:-4]
    return app(name)


def app(name: str) -> str:
    if not isinstance(name, str) or not APP_RE.fullmatch(name):
        raise InvalidName(
            f"invalid app name '{_show(name)}': use a lowercase letter, then up to "
            "39 lowercase letters, digits or '-'")
    return name


def service(name: str) -> str:
    if not isinstance(name, str) or not SERVICE_RE.fullmatch(name):
        raise InvalidName(
            f"invalid service name '{_show(name)}': use a lowercase letter, then up to "
            "31 lowercase letters, digits or '_'")
    return name


def user(name: str) -> str:
    if not isinstance(name, str) or not USER_RE.fullmatch(name):
        raise InvalidName(
            f"invalid user name '{_show(name)}': use letters, digits, '_', '.', '@' or '-'")
    return name


def variable(name: str) -> str:
    if not isinstance(name, str) or not VAR_RE.fullmatch(name):
        raise InvalidName(
            f"invalid variable name '{_show(name)}': use letters, digits and '_', "
            "not starting with a digit")
    if name.upper().startswith("DOTCLOUD_"):
        raise InvalidName(f"invalid variable name '{name}': DOTCLOUD_ variables are reserved")
    return name


def domain(name: str) -> str:
    if not isinstance(name, str):
        raise InvalidName(f"invalid domain '{_show(name)}'")
    lowered = name.lower().rstrip(".")
    if not DOMAIN_RE.fullmatch(lowered):
        raise InvalidName(f"invalid domain '{_show(name)}': expected a name like www.example.com")
    if lowered.rsplit(".", 1)[-1].isdigit():
        # An address, not a name: claimed as a domain it would take every
        # request that reaches the router by IP.
        raise InvalidName(f"invalid domain '{_show(name)}': an IP address is not a domain")
    return lowered
