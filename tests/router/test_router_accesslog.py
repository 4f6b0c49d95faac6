"""The access log's lines are the lines structlog renders for the platform."""
from __future__ import annotations

import io
import json
import re

import pytest
import structlog

from dotcloud import logs
from router.accesslog import AccessLog

FIELDS = dict(app="hello", service="www", instance="hello.www.0", method="GET",
              path="/a b?q='x'\\\"y\"\u00e9", client="127.0.0.1", status=200, nbytes=1234,
              duration_ms=0.12, request_id="5f2a00000001", detail=None)
STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z")


@pytest.fixture
def platform_logs():
    saved, json_mode = structlog.get_config(), logs.json_output()
    streams = []

    def configure(json_output: bool):
        stream = io.StringIO()
        streams.append(stream)
        logs.configure(json=json_output, stream=stream)
        return stream
    yield configure
    structlog.configure(**saved)
    logs.configure(json=json_mode)
    structlog.configure(**saved)


def _through_structlog(fields: dict, stream) -> str:
    kw = {("bytes" if k == "nbytes" else k): v for k, v in fields.items()}
    logs.get("router").info("request", **kw)
    return stream.getvalue().splitlines()[-1]


def _access_line(fields: dict) -> str:
    out = io.StringIO()
    access = AccessLog(stream=out)
    raw = {k: (v.encode("latin-1") if k in ("method", "path", "client", "request_id") else v)
           for k, v in fields.items()}
    for _ in range(2):      # the second line comes from the remembered fragment
        access.request(**raw)
    access.flush()
    first, second = out.getvalue().splitlines()[-2:]
    assert STAMP.sub("", first) == STAMP.sub("", second)
    return second


@pytest.mark.parametrize("json_output", [False, True])
@pytest.mark.parametrize("detail", [None, "upstream closed mid-response"])
def test_access_lines_are_what_structlog_renders(platform_logs, json_output, detail):
    stream = platform_logs(json_output)
    fields = dict(FIELDS, detail=detail)
    ours, theirs = _access_line(fields), _through_structlog(fields, stream)
    if json_output:
        a, b = json.loads(ours), json.loads(theirs)
        assert STAMP.fullmatch(a.pop("timestamp")) and STAMP.fullmatch(b.pop("timestamp"))
        assert list(a.items()) == list(b.items())       # same keys, same order
        assert a["path"] == FIELDS["path"] and a["bytes"] == 1234
    else:
        strip = re.compile(r"^timestamp='([^']*)' ")
        assert STAMP.fullmatch(strip.match(ours).group(1))
        assert strip.sub("", ours) == strip.sub("", theirs)
        assert "detail=None" in ours or f"detail={detail!r}" in ours


def test_the_timestamp_is_structlogs_iso_utc_stamp(monkeypatch):
    stamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    for now in (1764108491.871657, 1764108491.0, 1764108492.000001, 1764108491.9999996):
        monkeypatch.setattr(logs.time, "time", lambda: now)
        ours = logs.stamp(None, "warn", {})
        assert ours["level"] == "warning"
        import datetime as dt
        expected = dt.datetime.fromtimestamp(now, dt.timezone.utc).isoformat().replace(
            "+00:00", "Z")
        assert ours["timestamp"] == expected
        assert STAMP.fullmatch(stamper(None, "info", {})["timestamp"])
