"""An app's private /tmp: what a launcher's `user=` carries.

Every launcher of app code (builds and hooks through run_limited, the shim
for instances and data servers, `run`) takes `user` as a tuple it hands to
runtime.privileges.drop. `user(paths, app, uid, gid)` makes it: (uid, gid)
and, when this host lets us make mount namespaces, the app's own directory
DATA/tmp/APP (0700, the app's) to mount on /tmp, with the entries of /tmp
the app still needs to see (the data directory's, when DATA is under /tmp).
The directory is made here, by the platform, before any fork; destroy
removes it with the app's other directories (DataDir.app_paths).
"""
from __future__ import annotations

from pathlib import Path

from dotcloud import filemodes, logs
from dotcloud.datadir import DataDir
from runtime import privileges

log = logs.get("apptmp")
_said = False


def keep(data: Path) -> tuple[str, ...]:
    """The entries of /tmp holding the data directory (as named, and where a
    link leads), if it is under /tmp."""
    names: list[str] = []
    for path in (Path(data).absolute(), Path(data).resolve()):
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
    return (uid, gid, str(tmp), keep(paths.root))
