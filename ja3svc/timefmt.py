"""Times as people and the admin API write them: ISO-8601 (UTC unless an offset is given) or
Unix epoch seconds; written back as ISO-8601 UTC."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

_RELATIVE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd])")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_time(text: str, now: float | None = None) -> float:
    """Epoch seconds of ``text``: epoch seconds (``1764950400``, ``1764950400.5``), ISO-8601
    (``2026-12-03T16:00:00Z``, ``2026-12-03 16:00``, ``2026-12-03``; no offset means UTC), or,
    with ``now`` given, an age such as ``15m``, ``2h``, ``7d`` (that long before ``now``).
    Raises ValueError with a reason for anything else."""
    raw = text.strip()
    if not raw:
        raise ValueError("empty time")
    try:
        value = float(raw)
    except ValueError:
        pass
    else:
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{raw!r} is not a time")
        return value
    if now is not None:
        m = _RELATIVE.fullmatch(raw.lower())
        if m:
            return now - float(m.group(1)) * _UNIT[m.group(2)]
    try:
        parsed = datetime.fromisoformat(raw.replace("z", "Z"))
    except ValueError:
        raise ValueError(
            f"{raw!r} is not a time: use ISO-8601 (2026-12-03T16:00:00Z) or epoch seconds"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def iso(ts: float | None) -> str | None:
    """``2026-12-03T16:00:00.250Z`` (milliseconds only when there are any); None stays None."""
    if ts is None:
        return None
    dt = datetime.fromtimestamp(ts, UTC)
    if dt.microsecond:
        return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return dt.isoformat(timespec="seconds").replace("+00:00", "Z")


def short(ts: float | None) -> str:
    """``2026-12-03 16:00:00`` (UTC) for tables; "-" for None."""
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def age(ts: float | None, now: float) -> str:
    """``12 s ago``, ``5 min ago``, ``3 h ago``, ``2 d ago``; "never" for None."""
    if ts is None:
        return "never"
    seconds = max(0.0, now - ts)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit} ago"
    return f"{int(seconds)} s ago"


__all__ = ["age", "iso", "parse_time", "short"]
