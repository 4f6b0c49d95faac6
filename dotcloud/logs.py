"""Platform logging: structlog, key=value for a person, JSON with --log-json.

Every daemon calls configure() once at start. Library code only calls
structlog.get_logger() and binds context (app, rev, service, instance).
"""
import logging
import sys

import structlog


def configure(json: bool = False, level: str = "info", stream=None) -> None:
    stream = stream or sys.stderr
    renderer = (structlog.processors.JSONRenderer() if json
                else structlog.processors.KeyValueRenderer(
                    key_order=["timestamp", "level", "event"], drop_missing=True))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=True,
    )


def get(name: str = "dotcloud", **context):
    # Lazy: binding here would freeze structlog's default config at import time.
    return structlog.get_logger(component=name, **context)
