"""Reads and the few writes of the operator console that no other page of ja3svc needs:
the overview's aggregates, accounts, and the console's sessions.

Every read is bounded at a million decisions and labels: aggregates look at the newest
``OVERVIEW_SCAN`` decisions at most (the page says when that cut a window short), lists are
keyset pages (``queries.id_window_page``), and every filter has an index or a bounded window.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from ja3svc.store.models import ConsoleSession, Decision, Fingerprint, Sighting, UserFingerprint
from ja3svc.store.queries import HELLO_KINDS, SIGHTING_COLUMN
from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session

from ja3svc.vocabulary import FingerprintKey as Ref

# Decisions an overview aggregate reads at most: an hour of a busy server's logins.
OVERVIEW_SCAN = 200_000


@dataclass
class Overview:
    now: float
    minutes: list[float]  # start of each minute of the chart, oldest first
    per_minute: dict[str, list[int]]  # verdict -> logins in each minute
    top_blocked: list[dict[str, Any]]  # fingerprints rejected or tarpitted most in 24 h
    first_seen_today: list[dict[str, Any]]
    first_seen_today_count: int
    truncated: bool  # an aggregate hit OVERVIEW_SCAN
    last_sighting: float | None
    last_decision: float | None
    counts: dict[str, int] = field(default_factory=dict)


def _label_ref(labels_json: str | None) -> Ref | None:
    if not labels_json:
        return None
    try:
        first = json.loads(labels_json)[0]
        return str(first["kind"]), str(first["value"])
    except (ValueError, LookupError, TypeError):
        return None


def overview(session: Session, now: float | None = None, minutes: int = 60) -> Overview:
    """Logins per minute by verdict (the first allow of each login), the fingerprints most
    often rejected or tarpitted in the last 24 hours, the fingerprints first seen since
    midnight UTC, and when the newest sighting and decision arrived."""
    now = time.time() if now is None else now
    top_id = session.scalar(select(func.max(Decision.id))) or 0
    start = (now // 60 - minutes + 1) * 60

    def id_floor(since: float) -> int:
        """Ids at or above this cover ``since`` on (the ts index answers; ids follow time to
        within the writers' batches, covered by the margin), and at most OVERVIEW_SCAN rows."""
        first = session.scalar(
            select(Decision.id).where(Decision.ts >= since - 300).order_by(Decision.ts).limit(1)
        )
        return max(first or top_id + 1, top_id - OVERVIEW_SCAN + 1)

    # Each aggregate walks a range of the primary key (rows in insertion order, no lookups
    # through a secondary index); ``ts + 0`` keeps the planner off the ts index.
    hour_floor, day_floor = id_floor(start), id_floor(now - 86400)
    truncated = day_floor == top_id - OVERVIEW_SCAN + 1 and top_id >= OVERVIEW_SCAN
    per_minute: dict[str, list[int]] = defaultdict(lambda: [0] * minutes)
    bucket = func.floor(Decision.ts / 60)
    for minute, action, n in session.execute(
        select(bucket, Decision.action, func.count())
        .where(
            Decision.id >= hour_floor,
            Decision.ts + 0 >= start,
            Decision.command == "allow/before",
        )
        .group_by(bucket, Decision.action)
    ):
        i = int(minute * 60 - start) // 60
        if 0 <= i < minutes:
            per_minute[action.removeprefix("log:")][i] += n
    blocked: Counter[tuple[Ref, str]] = Counter()
    accounts: dict[tuple[Ref, str], set[str]] = defaultdict(set)
    for ja3, labels_json, action, user in session.execute(
        select(Decision.ja3_hash, Decision.labels, Decision.action, Decision.username).where(
            Decision.id >= day_floor,
            Decision.ts + 0 >= now - 86400,
            Decision.command == "allow/before",
            Decision.action.in_(("reject", "tarpit", "log:reject", "log:tarpit")),
        )
    ):
        ref = ("ja3_dovecot", ja3) if ja3 else _label_ref(labels_json)
        if ref is None:
            continue
        key = (ref, action.removeprefix("log:"))
        blocked[key] += 1
        if user:
            accounts[key].add(user)
    top_blocked = [
        {"kind": r[0], "value": r[1], "action": a, "logins": n, "accounts": len(accounts[(r, a)])}
        for (r, a), n in blocked.most_common(10)
    ]
    midnight = now - now % 86400
    today = select(Fingerprint).where(Fingerprint.first_seen >= midnight)
    first_today = [
        {
            "kind": fp.kind,
            "value": fp.value,
            "first_seen": fp.first_seen,
            "times_seen": fp.times_seen,
        }
        for fp in session.scalars(today.order_by(Fingerprint.first_seen.desc()).limit(15))
    ]
    # Counted up to 10,001 (through the first_seen index): "more than 10,000" is enough.
    today_count = session.scalar(
        select(func.count()).select_from(
            select(Fingerprint.id)
            .where(Fingerprint.first_seen >= midnight)
            .limit(10_001)
            .subquery()
        )
    )
    last_sighting = session.scalar(select(func.max(Sighting.ts)))
    last_decision = session.scalar(
        select(Decision.ts).where(Decision.id == top_id)
    ) if top_id else None  # fmt: skip
    return Overview(
        now=now,
        minutes=[start + 60 * i for i in range(minutes)],
        per_minute=dict(per_minute),
        top_blocked=top_blocked,
        first_seen_today=first_today,
        first_seen_today_count=int(today_count or 0),
        truncated=truncated,
        last_sighting=last_sighting,
        last_decision=last_decision,
    )


def connection_fingerprints(
    session: Session, decisions: list[dict[str, Any]], window: float = 300.0
) -> dict[int, list[Ref]]:
    """The fingerprints of the hello each decision's connection sent (decision id -> refs),
    from the sightings a capture stored for (remote address, port) shortly before it.

    Dovecot 2.3 sends no hash, so this is how its decisions link to a fingerprint; one
    indexed lookup (sightings by src, sport, ts) for the whole page.
    """
    wanted = {
        (d["remote_ip"], d["remote_port"]): d
        for d in decisions
        if d.get("remote_ip") and d.get("remote_port")
    }
    if not wanted:
        return {}
    cols = [SIGHTING_COLUMN[k] for k in HELLO_KINDS]
    lo = min(d["ts"] for d in wanted.values()) - window
    hi = max(d["ts"] for d in wanted.values())
    stmt = select(Sighting.src, Sighting.sport, Sighting.ts, *cols).where(
        or_(*((Sighting.src == ip) & (Sighting.sport == port) for ip, port in wanted)),
        Sighting.ts >= lo,
        Sighting.ts <= hi,
        Sighting.hello == "client",
    )
    newest: dict[tuple[str, int], tuple[float, list[Ref]]] = {}
    for src, sport, ts, *values in session.execute(stmt):
        refs = [(k, v) for k, v in zip(HELLO_KINDS, values, strict=True) if v]
        key = (src, sport)
        if key not in newest or ts > newest[key][0]:
            newest[key] = (ts, refs)
    out: dict[int, list[Ref]] = {}
    for d in decisions:
        found = newest.get((d.get("remote_ip"), d.get("remote_port")))
        if found and found[0] <= d["ts"] and found[0] >= d["ts"] - window:
            out[d["id"]] = found[1]
    return out


def account_page(
    session: Session, prefix: str = "", after: str | None = None, limit: int = 50
) -> tuple[list[dict[str, Any]], str | None]:
    """Accounts that logged in successfully, by name (through the (username, kind, value)
    index), with how many fingerprints and successes each has; keyset on the name."""
    stmt = select(
        UserFingerprint.username,
        func.count(),
        func.sum(UserFingerprint.successes),
        func.max(UserFingerprint.last_seen),
    )
    if prefix:
        stmt = stmt.where(
            UserFingerprint.username >= prefix, UserFingerprint.username < prefix + "\U0010ffff"
        )
    if after:
        stmt = stmt.where(UserFingerprint.username > after)
    rows = session.execute(
        stmt.group_by(UserFingerprint.username).order_by(UserFingerprint.username).limit(limit + 1)
    ).all()
    out = [
        {"username": u, "fingerprints": n, "successes": int(s or 0), "last_seen": la}
        for u, n, s, la in rows[:limit]
    ]
    return out, (out[-1]["username"] if len(rows) > limit else None)


def account_fingerprints(session: Session, username: str) -> list[dict[str, Any]]:
    """What the policy service learned of one account: each fingerprint it logged in with."""
    rows = session.scalars(
        select(UserFingerprint)
        .where(UserFingerprint.username == username)
        .order_by(UserFingerprint.last_seen.desc())
        .limit(500)
    )
    return [
        {
            "id": r.id,
            "kind": r.kind,
            "value": r.value,
            "first_seen": r.first_seen,
            "last_seen": r.last_seen,
            "successes": r.successes,
        }
        for r in rows
    ]


def forget_account_fingerprint(session: Session, username: str, row_id: int) -> int:
    """Delete one learned (account, fingerprint); the account's next login with it counts as
    new again. Returns the rows deleted (0 or 1)."""
    result = session.execute(
        delete(UserFingerprint).where(
            UserFingerprint.id == row_id, UserFingerprint.username == username
        )
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


# --- sessions -------------------------------------------------------------------------------


def session_key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_session(session: Session, token: str, lifetime: float, now: float) -> None:
    # Expired rows go at each sign-in: the table holds only live sessions.
    session.execute(delete(ConsoleSession).where(ConsoleSession.expires_at < now))
    session.add(ConsoleSession(id=session_key(token), created_at=now, expires_at=now + lifetime))


def session_alive(session: Session, token: str, now: float) -> bool:
    expires = session.scalar(
        select(ConsoleSession.expires_at).where(ConsoleSession.id == session_key(token))
    )
    return expires is not None and expires > now


def end_session(session: Session, token: str) -> None:
    session.execute(delete(ConsoleSession).where(ConsoleSession.id == session_key(token)))
