"""Heroku's and Dokku's DYNO: `web.1`, `release.1`, `run.1`.

Apps written for Heroku test it to know they run deployed, and then read
DATABASE_URL, trust the router's X-Forwarded-Proto and send plain HTTP to
HTTPS (python-getting-started does all three). The app's own DYNO variable
wins; set empty (`var set APP DYNO=`), it leaves DYNO out altogether, since
such apps test only whether it is there.
"""
from __future__ import annotations

from typing import Mapping


def with_dyno(env: Mapping[str, str], name: str) -> dict[str, str]:
    """`env` with DYNO=name, unless it has its own."""
    if "DYNO" not in env:
        return {"DYNO": name, **env}
    return {k: v for k, v in env.items() if k != "DYNO" or v}
