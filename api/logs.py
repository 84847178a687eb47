"""Structured JSON logs on stderr, one object per line.

Callers pass structured fields through ``extra={"fields": {...}}``. Secrets never reach here:
the policy route drops ``pwhash`` from attributes before anything is logged, and credentials are
never put into a log record.
"""

from __future__ import annotations

import json
import logging
import sys
import time

REDACTED_KEYS = frozenset({"pwhash", "password", "api_key", "admin_token", "authorization"})


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "ts": round(record.created, 3),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            for key, value in fields.items():
                if key not in REDACTED_KEYS:
                    out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, separators=(",", ":"))


def configure(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("ja3svc")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
