"""Platform logging: structlog, key=value for a person, JSON with --log-json.

Every daemon calls configure() once at start. Library code only calls
structlog.get_logger() and binds context (app, rev, service, instance).
"""
import logging
import sys
import time
from datetime import datetime, timezone

import structlog


KEY_ORDER = ["timestamp", "level", "event"]
_json = False


def configure(json: bool = False, level: str = "info", stream=None) -> None:
    global _json
    _json = json
    stream = stream or sys.stderr
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            stamp,
            structlog.processors.format_exc_info,
            renderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=True,
    )


def get(name: str = "dotcloud", **context):
    # Lazy: binding here would freeze structlog's default config at import time.
    return structlog.get_logger(component=name, **context)


def renderer():
    """The last processor: what configure() chose, key=value or JSON."""
    if _json:
        return structlog.processors.JSONRenderer()
    return structlog.processors.KeyValueRenderer(key_order=KEY_ORDER, drop_missing=True)


def json_output() -> bool:
    return _json


_LEVEL_NAMES = {"warn": "warning", "exception": "error"}


class _Stamp:
    """structlog's add_log_level and TimeStamper(fmt="iso", utc=True) in one
    processor, with the same output; the date and time of day are formatted
    once a second, since the router logs every request."""

    def __init__(self):
        self._second = -1
        self._prefix = ""

    def __call__(self, logger, method_name: str, event_dict: dict) -> dict:
        event_dict["level"] = _LEVEL_NAMES.get(method_name, method_name)
        event_dict["timestamp"] = self.now()
        return event_dict

    def now(self) -> str:
        return self.at(time.time())

    def at(self, when: float) -> str:
        # rounded to the microsecond as datetime.fromtimestamp() rounds (its
        # modf() fraction is when - int(when), exactly, for times after 1970)
        second = int(when)
        micros = round((when - second) * 1e6)
        if micros >= 1_000_000:
            second += 1
            micros -= 1_000_000
        if second != self._second:
            self._second = second
            self._prefix = datetime.fromtimestamp(second, timezone.utc).strftime(
                "%Y-%m-%dT%H:%M:%S")
        # datetime.isoformat() leaves out a zero fraction: so do we
        return "%s.%06dZ" % (self._prefix, micros) if micros else self._prefix + "Z"


stamp = _Stamp()
