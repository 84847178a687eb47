"""Structured JSON logs on stderr, one object per line, for every logger of the process.

ja3svc's own loggers, uvicorn's (``uvicorn.error``, ``uvicorn.access``) and anything a library
logs all go through the root logger's one handler, so a log shipper sees one format. ``time`` is
ISO 8601 in UTC with its zone; ``ts`` the same instant as epoch seconds.

Callers pass structured fields through ``extra={"fields": {...}}``. Secrets never reach here:
the policy route drops ``pwhash`` from attributes before anything is logged, and credentials are
never put into a log record.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
from typing import Any

REDACTED_KEYS = frozenset({"pwhash", "password", "api_key", "admin_token", "authorization"})
# The loggers uvicorn creates; their own handlers are replaced by the root's.
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")
_ACCESS_FIELDS = ("client", "method", "path", "http_version", "status")


def iso_time(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).isoformat(timespec="milliseconds")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "time": iso_time(record.created),
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            for key, value in fields.items():
                if key not in REDACTED_KEYS:
                    out[key] = value
        elif record.name == "uvicorn.access" and isinstance(record.args, tuple):
            # uvicorn passes (client, method, path, http version, status) as arguments.
            out.update(zip(_ACCESS_FIELDS, record.args, strict=False))
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, separators=(",", ":"))


def configure(level: str = "INFO") -> None:
    """JSON lines on stderr for every logger; ja3svc's and uvicorn's at ``level``, other
    libraries' warnings and errors."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    for name in ("ja3svc", *UVICORN_LOGGERS):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
        logger.setLevel(level.upper())
    logging.captureWarnings(True)


def uvicorn_log_config(level: str) -> dict[str, Any]:
    """uvicorn's ``log_config``: applied by uvicorn in the server and in every worker process,
    it routes uvicorn's loggers into the same JSON handler instead of its text formatters."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": f"{__name__}.JsonFormatter"}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["stderr"], "level": "WARNING"},
        "loggers": {
            name: {"handlers": [], "level": level.upper(), "propagate": True}
            for name in ("ja3svc", *UVICORN_LOGGERS)
        },
    }
