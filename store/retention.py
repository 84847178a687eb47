"""Bounded growth: drop per-event rows older than the retention period.

Sightings, authentication failures and policy decisions are events and are pruned; fingerprint
aggregates (first/last seen, times seen), labels and per-user fingerprints are knowledge and
are kept, so `fingerprints top` still counts what was pruned.
"""

from __future__ import annotations

import time

from ja3svc.store.database import Database
from ja3svc.store.models import AuthFailure, Decision, DovecotHash, Sighting
from sqlalchemy import delete

PRUNED_TABLES = (Sighting, AuthFailure, Decision)


def prune(db: Database, retention_days: float, *, now: float | None = None) -> dict[str, int]:
    """Delete events older than ``retention_days``; return the rows deleted per table."""
    cutoff = (time.time() if now is None else now) - retention_days * 86400
    deleted: dict[str, int] = {}
    # One transaction per table: a long capture-side lock on sightings should not also hold
    # the policy service's tables.
    for model in PRUNED_TABLES:
        with db.session(write=True) as session:
            result = session.execute(delete(model).where(model.ts < cutoff))
            deleted[model.__tablename__] = result.rowcount or 0
    # The Dovecot-hash index is knowledge, but clients that randomise (GREASE, permuted
    # extensions) add a row per connection: keep what was seen within the period.
    with db.session(write=True) as session:
        result = session.execute(delete(DovecotHash).where(DovecotHash.last_seen < cutoff))
        deleted[DovecotHash.__tablename__] = result.rowcount or 0
    return deleted
