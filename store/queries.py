"""Read-side queries behind ``ja3svc fingerprints`` (and usable by the API)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ja3svc.store.models import (
    FINGERPRINT_FIELDS,
    AuthFailure,
    DovecotHash,
    Fingerprint,
    Label,
    Sighting,
    UserFingerprint,
)
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from ja3svc.vocabulary import MD5_RE
from ja3svc.vocabulary import FingerprintKey as Ref

# The sightings column holding each fingerprint kind's value.
SIGHTING_COLUMN = {kind: getattr(Sighting, key) for kind, (key, _) in FINGERPRINT_FIELDS.items()}


@dataclass
class FingerprintDetails:
    kind: str
    value: str
    fingerprint: Fingerprint | None  # None: labelled but never seen
    labels: list[Label] = field(default_factory=list)
    recent_sightings: list[Sighting] = field(default_factory=list)
    retained_sightings: int = 0
    users: int = 0
    failures: int = 0  # authentication failures recorded under it (reputation)
    # The other fingerprints of the same hellos (see hello_family).
    family: list[Ref] = field(default_factory=list)


# Client-hello kinds a sighting row carries, in the order pages list them.
HELLO_KINDS = ("ja3", "ja3n", "ja4", "ja3_dovecot")
# Newest sightings searched for a kind whose column has no index (only ja3_hash has one:
# captures write sightings fast, and each index slows them down).
FAMILY_SCAN = 20_000


def recent_sightings(session: Session, kind: str, value: str, limit: int = 50) -> list[Sighting]:
    """The newest client-hello sightings of (``kind``, ``value``): through the ja3_hash index
    for JA3, else among the newest ``FAMILY_SCAN`` sightings (bounded at any table size).
    A Dovecot hash is first looked up as JA3 (the same value for plain OpenSSL clients)."""
    column = SIGHTING_COLUMN.get(kind)
    if column is None:
        return []
    base = select(Sighting).where(Sighting.hello == "client").order_by(Sighting.id.desc())
    if kind == "ja3_dovecot":
        found = list(
            session.scalars(
                base.where(Sighting.ja3_hash == value, column == value).limit(limit)
            )
        )
        if found:
            return found
    stmt = base.where(column == value).limit(limit)
    if kind != "ja3":
        top = session.scalar(select(func.max(Sighting.id))) or 0
        stmt = stmt.where(Sighting.id > top - FAMILY_SCAN)
    return list(session.scalars(stmt))


def hello_family(
    session: Session, kind: str, value: str, sightings: Sequence[Sighting] | None = None
) -> list[Ref]:
    """Every fingerprint of the hellos that produced (``kind``, ``value``): their JA3, JA3N,
    JA4 and Dovecot JA3, from its recent sightings (``recent_sightings`` unless given),
    ``(kind, value)`` first.

    One client gives one JA3N and JA4 but, if it sends GREASE, a new JA3 and Dovecot JA3 per
    connection; all of them are listed. Only what captures recorded is listed (sightings,
    Dovecot's hashes under each OpenSSL profile).
    """
    found: dict[Ref, None] = {(kind, value): None}
    if kind == "ja3s":
        return list(found)
    rows = recent_sightings(session, kind, value) if sightings is None else sightings
    for row in rows:
        for k in HELLO_KINDS:
            v = getattr(row, FINGERPRINT_FIELDS[k][0])
            if v:
                found.setdefault((k, v), None)
    # Dovecot's hash of the same hellos under the other OpenSSL profile (and, for a hash no
    # sighting retained, the hello's other fingerprints), from what captures recorded.
    dovecot = [v for k, v in found if k == "ja3_dovecot"]
    for variant in dovecot_variants(session, dovecot).values():
        for ref in variant["refs"]:
            found.setdefault(ref, None)
    return list(found)


def dovecot_variants(session: Session, hashes: Sequence[str]) -> dict[str, dict[str, Any]]:
    """For Dovecot hashes: under which OpenSSL profile a captured hello gives each one
    (``profiles``), and the fingerprints of those hellos (``refs``: both profiles' Dovecot
    hashes, JA3, JA3N, JA4), from the dovecot_hashes table (indexed by either hash)."""
    if not hashes:
        return {}
    wanted = list(dict.fromkeys(hashes))[:20]
    out: dict[str, dict[str, Any]] = {h: {"profiles": set(), "refs": []} for h in wanted}
    stmt = (
        select(DovecotHash)
        .where(or_(DovecotHash.openssl30.in_(wanted), DovecotHash.openssl32.in_(wanted)))
        .order_by(DovecotHash.last_seen.desc())
        .limit(50)
    )
    for row in session.scalars(stmt):
        refs = [
            ("ja3_dovecot", row.openssl30), ("ja3_dovecot", row.openssl32), ("ja3", row.ja3_hash),
            ("ja3n", row.ja3n_hash), ("ja4", row.ja4),
        ]  # fmt: skip
        for h, profile in ((row.openssl30, "openssl-3.0"), (row.openssl32, "openssl-3.2")):
            if h in out:
                out[h]["profiles"].add(profile)
                out[h]["refs"].extend(r for r in refs if r[1] and r not in out[h]["refs"])
    return out


# ``scan`` for filters an index answers in id order by itself.
UNBOUNDED = 1 << 62


class Page(NamedTuple):
    """One page of rows, newest (highest id) first."""

    rows: list[Any]
    # Pass as ``before`` for the next (older) page; None: nothing older matches.
    next_before: int | None
    # Set when the scan window ended before the page was full: ids from here down were not
    # searched yet (the next page goes on from there).
    scanned_to: int | None


def id_window_page(
    session: Session,
    model: Any,
    conditions: Sequence[Any],
    limit: int,
    before: int | None = None,
    scan: int = 100_000,
    floor: int = 0,
    ceiling: int | None = None,
    sort_found: bool = False,
) -> Page:
    """Rows of ``model`` matching ``conditions``, by id descending, below ``before``.

    Bounded whatever the conditions: one call reads at most ``scan`` consecutive ids (through
    an index where a condition has one). When fewer than ``limit`` rows match in that window,
    the page says how far it searched and where the next one starts, so a rare match over a
    million rows is several quick pages instead of one slow one. ``floor`` and ``ceiling``
    narrow the ids further (exclusive floor, inclusive ceiling).
    """
    top = session.scalar(select(func.max(model.id)))
    if top is None:
        return Page([], None, None)
    hi = top if before is None else min(top, before - 1)
    if ceiling is not None:
        hi = min(hi, ceiling)
    lo = max(floor, hi - scan)
    if hi <= lo:
        return Page([], None, None)
    # ``sort_found``: the conditions select few rows through an index of their own (a value
    # prefix); ``id + 0`` keeps the planner from walking the primary key instead (SQLite did,
    # reading a million rows) and sorts the few found.
    key = model.id + 0 if sort_found else model.id
    stmt = (
        select(model)
        .where(key <= hi, key > lo, *conditions)
        .order_by(key.desc())
        .limit(limit + 1)
    )
    rows = list(session.scalars(stmt))
    if len(rows) > limit:
        rows = rows[:limit]
        return Page(rows, rows[-1].id, None)
    if lo > floor:  # window exhausted, older ids remain
        return Page(rows, lo + 1, lo + 1)
    return Page(rows, None, None)


def guess_kinds(value: str) -> tuple[str, ...]:
    """Kinds a bare value can be: an MD5 is any of the JA3 family, anything else is JA4."""
    if MD5_RE.fullmatch(value.lower()):
        return tuple(k for k in FINGERPRINT_FIELDS if k != "ja4")
    return ("ja4",)


def top_fingerprints(
    session: Session, *, kinds: Sequence[str] | None = None, limit: int = 20
) -> list[Fingerprint]:
    stmt = select(Fingerprint).order_by(Fingerprint.times_seen.desc(), Fingerprint.value)
    if kinds:
        stmt = stmt.where(Fingerprint.kind.in_(kinds))
    return list(session.scalars(stmt.limit(limit)))


def fingerprint_details(
    session: Session, value: str, *, kinds: Sequence[str] | None = None, sightings: int = 10
) -> list[FingerprintDetails]:
    """Everything known about ``value`` under each kind where it is seen or labelled."""
    value = value.strip()
    if MD5_RE.fullmatch(value.lower()):
        value = value.lower()
    out = []
    for kind in kinds or guess_kinds(value):
        fp = session.scalars(
            select(Fingerprint).where(Fingerprint.kind == kind, Fingerprint.value == value)
        ).one_or_none()
        labels = list(
            session.scalars(
                select(Label)
                .where(Label.kind == kind, Label.value == value)
                .order_by(Label.confidence.desc(), Label.source)
            )
        )
        users = (
            session.scalar(
                select(func.count()).where(
                    UserFingerprint.kind == kind, UserFingerprint.value == value
                )
            )
            or 0
        )
        failures = (
            session.scalar(
                select(func.count()).where(AuthFailure.kind == kind, AuthFailure.value == value)
            )
            or 0
        )
        # Known to the policy service alone (a Dovecot hash rejected on reputation, an
        # account's learned fingerprint) is known too.
        if fp is None and not labels and not users and not failures:
            continue
        column = SIGHTING_COLUMN[kind]
        recent = list(
            session.scalars(
                select(Sighting)
                .where(column == value)
                .order_by(Sighting.ts.desc())
                .limit(sightings)
            )
        )
        retained = session.scalar(select(func.count()).where(column == value)) or 0
        family = [r for r in hello_family(session, kind, value) if r != (kind, value)]
        out.append(
            FingerprintDetails(
                kind, value, fp, labels, recent, retained, users, failures, family
            )
        )
    return out


@dataclass
class SearchHit:
    kind: str
    value: str
    times_seen: int
    last_seen: float | None
    names: list[str]


def search(
    session: Session, text: str, *, kinds: Sequence[str] | None = None, limit: int = 50
) -> list[SearchHit]:
    """Fingerprints whose value starts with ``text``, whose full string contains it, or whose
    labels mention it (client name, category, note); case-insensitive."""
    pattern = f"%{text}%"
    fp_stmt = select(Fingerprint).where(
        or_(
            Fingerprint.value.ilike(f"{text}%"),
            Fingerprint.full_string.ilike(pattern),
        )
    )
    label_stmt = select(Label).where(
        or_(
            Label.value.ilike(f"{text}%"),
            Label.client_name.ilike(pattern),
            Label.category.ilike(pattern),
            Label.note.ilike(pattern),
        )
    )
    if kinds:
        fp_stmt = fp_stmt.where(Fingerprint.kind.in_(kinds))
        label_stmt = label_stmt.where(Label.kind.in_(kinds))
    hits: dict[tuple[str, str], SearchHit] = {}
    for fp in session.scalars(fp_stmt.limit(limit)):
        hits[(fp.kind, fp.value)] = SearchHit(fp.kind, fp.value, fp.times_seen, fp.last_seen, [])
    for label in session.scalars(label_stmt.limit(limit * 4)):
        hit = hits.get((label.kind, label.value))
        if hit is None:
            hit = hits[(label.kind, label.value)] = SearchHit(label.kind, label.value, 0, None, [])
        if label.client_name and label.client_name not in hit.names:
            hit.names.append(label.client_name)
    # Labelled-only hits get their counts too, so the ordering below is meaningful.
    unseen = [k for k, h in hits.items() if h.last_seen is None]
    if unseen:
        for fp in session.scalars(
            select(Fingerprint).where(
                or_(*(((Fingerprint.kind == k) & (Fingerprint.value == v)) for k, v in unseen))
            )
        ):
            hits[(fp.kind, fp.value)].times_seen = fp.times_seen
            hits[(fp.kind, fp.value)].last_seen = fp.last_seen
    ordered = sorted(hits.values(), key=lambda h: (-h.times_seen, h.kind, h.value))
    return ordered[:limit]
