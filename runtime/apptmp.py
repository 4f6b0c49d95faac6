"""An app's private /tmp: what a launcher's `user=` carries.

Every launcher of app code (builds and hooks through run_limited, the shim
for instances and data servers, `run`) takes `user` as a tuple it hands to
runtime.privileges.drop. `user(paths, app, uid, gid)` makes it: (uid, gid)
and, when this host lets us make mount namespaces, the app's own directory
DATA/tmp/APP (0700, the app's) to mount on /tmp, with the entries of /tmp
the app still needs to see (the data directory's and the platform's own
install's, when they are under /tmp).
The directory is made here, by the platform, before any fork; destroy
removes it with the app's other directories (DataDir.app_paths).
"""
from __future__ import annotations

import sys
from pathlib import Path

from dotcloud import filemodes, logs
from dotcloud.datadir import DataDir
from runtime import privileges

log = logs.get("apptmp")
PLATFORM = Path(__file__).resolve().parents[1]
_said = False


def keep(*places: Path | str) -> tuple[str, ...]:
    """The entries of /tmp holding any of `places` (as named, and where a
    link leads) that are under /tmp."""
    names: list[str] = []
    for path in [p for place in places for p in (Path(place).absolute(), Path(place).resolve())]:
        try:
            rel = path.relative_to("/tmp")
        except ValueError:
            continue
        if rel.parts and rel.parts[0] not in names:
            names.append(rel.parts[0])
    return tuple(names)


def user(paths: DataDir, app: str, uid: int, gid: int) -> tuple:
    """(uid, gid) or (uid, gid, tmp, keep): see module doc."""
    global _said
    if not privileges.private_tmp_works():
        if not _said:
            _said = True
            log.warning("no_private_tmp", reason="cannot make a mount namespace here "
                        "(not root, or no CAP_SYS_ADMIN): apps share the host's /tmp, "
                        "their TMPDIR stays private")
        return (uid, gid)
    tmp = paths.app_tmp(app)
    paths.tmps.mkdir(mode=0o700, exist_ok=True)
    tmp.mkdir(mode=0o700, exist_ok=True)
    filemodes.own(tmp, uid, gid)
    # Apps run the platform's own interpreter and files too (a venv's python,
    # the static server): an install under /tmp must stay in sight.
    return (uid, gid, str(tmp), keep(paths.root, sys.executable, sys.prefix, PLATFORM))
