"""The one read API of the fingerprint database: ``ja3svc fingerprints top|show|search``, the
admin API's ``/api/v1/fingerprints...`` and the console all call ``top``, ``lookup`` and
``search`` here (through ``PolicyStore`` for the service), so they answer the same questions
with the same rules:

- Values: a fingerprint value is taken in canonical form by the label validator's rule
  (``ja3svc.vocabulary.fingerprint_value``: white space dropped, an MD5 in lower case, a JA4 as
  given); a value that is not one of its kind is refused with the validator's reason
  (InvalidLabel). Without a kind, an MD5 is any of the JA3 kinds and anything else a JA4
  (``guess_kinds``).
- ``top``: by ``seen``, the most seen fingerprints (times seen, then value); by ``failures``,
  those that failed logins for the most distinct accounts (then failures, then value). Kinds:
  any given (none: all). The most seen carry the client names of their labels.
- ``search``: literal (``%`` and ``_`` are not wildcards). A fingerprint matches when its value
  starts with the text (in the kind's canonical case, through the index) or its full string
  contains it (any case); a label when its value starts with the text or its client name,
  category or note contains it (any case). "Contains" reads the newest ``SEARCH_SCAN``
  fingerprints and labels, so a search stays bounded at any size. One hit per (kind, value),
  the most seen first (then kind, value), at most ``limit``.
- ``lookup``: everything known of one (kind, value) and of the other fingerprints of its
  hellos (``hello_family``); ``known`` says whether anything is. ``ja3svc fingerprints show``
  without ``--kind`` looks the value up under each guessed kind and lists those where the value
  itself is seen or labelled.

Results are plain JSON-ready dicts with times in epoch seconds; each edge renders them (the
API as ISO-8601).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

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

from ja3svc.vocabulary import FINGERPRINT_KINDS, MD5_RE, VALUE_FORMATS, fingerprint_value
from ja3svc.vocabulary import FingerprintKey as Ref

# The sightings column holding each fingerprint kind's value.
SIGHTING_COLUMN = {kind: getattr(Sighting, key) for kind, (key, _) in FINGERPRINT_FIELDS.items()}


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
            session.scalars(base.where(Sighting.ja3_hash == value, column == value).limit(limit))
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
        select(model).where(key <= hi, key > lo, *conditions).order_by(key.desc()).limit(limit + 1)
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


def refs_match(model: Any, refs: Sequence[Ref]) -> Any:
    """OR of (kind, value) pairs: each term uses the (kind, value, ...) indexes (a row-value
    IN is a full scan on SQLite)."""
    return or_(*((model.kind == k) & (model.value == v) for k, v in refs))


def _label_names(session: Session, refs: Sequence[Ref]) -> dict[Ref, list[str]]:
    names: dict[Ref, list[str]] = {}
    if refs:
        for k, v, name in session.execute(
            select(Label.kind, Label.value, Label.client_name)
            .where(refs_match(Label, refs))
            .order_by(Label.kind, Label.value, Label.source)
        ):
            if name and name not in names.setdefault((k, v), []):
                names[(k, v)].append(name)
    return names


def top(
    session: Session,
    *,
    kinds: Sequence[str] | None = None,
    by: Literal["seen", "failures"] = "seen",
    limit: int = 20,
) -> list[dict[str, Any]]:
    """The most seen fingerprints, or those failing for the most accounts (see module doc)."""
    if by == "failures":
        accounts = func.count(func.distinct(AuthFailure.username))
        failures = func.count()
        stmt = (
            select(AuthFailure.kind, AuthFailure.value, accounts, failures)
            .group_by(AuthFailure.kind, AuthFailure.value)
            .order_by(accounts.desc(), failures.desc(), AuthFailure.value)
        )
        if kinds:
            stmt = stmt.where(AuthFailure.kind.in_(kinds))
        rows = [
            {"kind": k, "value": v, "distinct_accounts": a, "failures": f}
            for k, v, a, f in session.execute(stmt.limit(limit))
        ]
    elif by == "seen":
        stmt = select(Fingerprint).order_by(Fingerprint.times_seen.desc(), Fingerprint.value)
        if kinds:
            stmt = stmt.where(Fingerprint.kind.in_(kinds))
        rows = [
            {
                "kind": fp.kind,
                "value": fp.value,
                "times_seen": fp.times_seen,
                "first_seen": fp.first_seen,
                "last_seen": fp.last_seen,
            }
            for fp in session.scalars(stmt.limit(limit))
        ]
        names = _label_names(session, [(r["kind"], r["value"]) for r in rows])
        for r in rows:
            r["labels"] = "; ".join(names.get((r["kind"], r["value"]), []))
    else:
        raise ValueError(f"top by {by!r}: seen or failures")
    return rows


# Newest fingerprints and labels whose text ``search`` reads for "contains" matches: bounded
# at any table size (a GREASE-ing client adds a JA3 per connection).
SEARCH_SCAN = 200_000


def search(
    session: Session, text: str, *, kinds: Sequence[str] | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    """Fingerprints and labels matching ``text`` (see module doc): one hit per (kind, value)
    with its counts and the client names of its labels."""
    text = text.strip()
    sqlite_db = session.get_bind().dialect.name == "sqlite"
    hits: dict[Ref, dict[str, Any]] = {}
    # Value prefixes through the (kind, value) index, in each kind's canonical case.
    for k in kinds or FINGERPRINT_KINDS:
        prefix = text if VALUE_FORMATS[k] == "ja4" else text.lower()
        if sqlite_db:
            # A range: SQLite's LIKE is case-insensitive and so cannot use the index.
            match = (Fingerprint.value >= prefix) & (Fingerprint.value < prefix + "\x7f")
        else:
            match = Fingerprint.value.startswith(prefix, autoescape=True)
        stmt = select(Fingerprint).where(Fingerprint.kind == k, match).order_by(Fingerprint.value)
        for fp in session.scalars(stmt.limit(limit)):
            hits[(fp.kind, fp.value)] = _hit(fp.kind, fp.value, fp.times_seen, fp.last_seen)
    newest_fp = session.scalar(select(func.max(Fingerprint.id))) or 0
    fp_stmt = select(Fingerprint).where(
        Fingerprint.id > newest_fp - SEARCH_SCAN,
        Fingerprint.full_string.icontains(text, autoescape=True),
    )
    newest_label = session.scalar(select(func.max(Label.id))) or 0
    label_stmt = select(Label.kind, Label.value).where(
        Label.id > newest_label - SEARCH_SCAN,
        or_(
            Label.value.istartswith(text, autoescape=True),
            Label.client_name.icontains(text, autoescape=True),
            Label.category.icontains(text, autoescape=True),
            Label.note.icontains(text, autoescape=True),
        ),
    )
    if kinds:
        fp_stmt = fp_stmt.where(Fingerprint.kind.in_(kinds))
        label_stmt = label_stmt.where(Label.kind.in_(kinds))
    for fp in session.scalars(fp_stmt.order_by(Fingerprint.times_seen.desc()).limit(limit)):
        hits[(fp.kind, fp.value)] = _hit(fp.kind, fp.value, fp.times_seen, fp.last_seen)
    labelled = [
        (k, v) for k, v in session.execute(label_stmt.distinct().limit(limit)) if (k, v) not in hits
    ]
    # Labelled-only hits get their counts too, so the ordering below is meaningful.
    for k, v in labelled:
        hits[(k, v)] = _hit(k, v, 0, None)
    if labelled:
        for fp in session.scalars(select(Fingerprint).where(refs_match(Fingerprint, labelled))):
            hits[(fp.kind, fp.value)].update(times_seen=fp.times_seen, last_seen=fp.last_seen)
    ordered = sorted(hits.values(), key=lambda h: (-h["times_seen"], h["kind"], h["value"]))
    ordered = ordered[:limit]
    names = _label_names(session, [(h["kind"], h["value"]) for h in ordered])
    for h in ordered:
        h["names"] = names.get((h["kind"], h["value"]), [])
    return ordered


def _hit(kind: str, value: str, times_seen: int, last_seen: float | None) -> dict[str, Any]:
    return {"kind": kind, "value": value, "times_seen": times_seen, "last_seen": last_seen}


# A label's columns but its id, in the order the API lists them.
LABEL_COLUMNS = (
    "kind", "value", "client_name", "category", "action", "tarpit_seconds", "source",
    "confidence", "note", "created_at", "updated_at",
)  # fmt: skip


def label_dict(row: Label) -> dict[str, Any]:
    return {"id": row.id, **{c: getattr(row, c) for c in LABEL_COLUMNS}}


def lookup(
    s: Session,
    kind: str,
    value: str,
    *,
    window: int = 3600,
    now: float | None = None,
    sightings: int = 10,
) -> dict[str, Any]:
    """Everything known of one fingerprint and of the other fingerprints of its hellos
    (``family``, see ``hello_family``): labels, counts, the accounts that logged in with any
    of them (successes) or failed (failures), its recent and retained sightings and the
    reputation the verdict engine would compute for them. ``value`` is taken in canonical
    form (InvalidLabel where it is not one of ``kind``)."""
    from ja3svc.store.policy_store import reputation_in  # it imports this module

    value = fingerprint_value(kind, value)
    now = time.time() if now is None else now
    recent = recent_sightings(s, kind, value, max(50, sightings))
    refs = hello_family(s, kind, value, recent)
    # Dovecot's JA3 equals standard JA3 for plain OpenSSL clients: the same value of the other
    # kind is asked for too, and shown if anything is known of it.
    mirror = {"ja3": "ja3_dovecot", "ja3_dovecot": "ja3"}.get(kind)
    if mirror and (mirror, value) not in refs:
        refs.append((mirror, value))
    fps = {
        (fp.kind, fp.value): fp
        for fp in s.scalars(select(Fingerprint).where(refs_match(Fingerprint, refs)))
    }
    labels: dict[Ref, list[Label]] = {}
    for lb in s.scalars(
        select(Label).where(refs_match(Label, refs)).order_by(Label.confidence.desc(), Label.id)
    ):
        labels.setdefault((lb.kind, lb.value), []).append(lb)
    accounts: dict[str, dict[str, Any]] = {}
    for u, n, f, la in s.execute(
        select(
            UserFingerprint.username,
            func.max(UserFingerprint.successes),
            func.min(UserFingerprint.first_seen),
            func.max(UserFingerprint.last_seen),
        )
        .where(refs_match(UserFingerprint, refs))
        .group_by(UserFingerprint.username)
        .order_by(func.max(UserFingerprint.last_seen).desc())
        .limit(100)
    ):
        accounts[u] = {
            "username": u, "successes": n, "first_seen": f, "last_seen": la,
            "failures": 0, "last_failure": None,
        }  # fmt: skip
    # A failure is recorded once per fingerprint of the login: count distinct times.
    for u, n, last in s.execute(
        select(AuthFailure.username, func.count(func.distinct(AuthFailure.ts)),
               func.max(AuthFailure.ts))
        .where(refs_match(AuthFailure, refs))
        .group_by(AuthFailure.username)
        .order_by(func.max(AuthFailure.ts).desc())
        .limit(100)
    ):  # fmt: skip
        entry = accounts.setdefault(
            u, {"username": u, "successes": 0, "first_seen": None, "last_seen": None}
        )
        entry.update(failures=n, last_failure=last)
    user_refs = {
        (k, v)
        for k, v in s.execute(
            select(UserFingerprint.kind, UserFingerprint.value)
            .where(refs_match(UserFingerprint, refs))
            .distinct()
        )
    }
    retained = 0
    if kind in SIGHTING_COLUMN:
        own = [SIGHTING_COLUMN[kind] == value]
        if kind != "ja3":  # no index on the other kinds' columns: the newest FAMILY_SCAN only
            newest = s.scalar(select(func.max(Sighting.id))) or 0
            own.append(Sighting.id > newest - FAMILY_SCAN)
        retained = s.scalar(select(func.count()).select_from(Sighting).where(*own)) or 0
    rep = reputation_in(s, refs, window, now)
    variants = dovecot_variants(s, [v for k, v in refs if k == "ja3_dovecot"])
    # Fingerprints a capture recorded for the same hellos (sightings, Dovecot's variants).
    recorded = {r for v in variants.values() for r in v["refs"]}
    for sg in recent:
        recorded.update((k, getattr(sg, FINGERPRINT_FIELDS[k][0])) for k in HELLO_KINDS)
    family = []
    for ref in refs:
        fp = fps.get(ref)
        known = fp is not None or ref in labels or ref in user_refs or ref in recorded
        if ref != (kind, value) and not known:
            continue  # a mirrored kind nothing is known of
        family.append(
            {
                "kind": ref[0],
                "value": ref[1],
                "full_string": fp.full_string if fp else None,
                "times_seen": fp.times_seen if fp else 0,
                "first_seen": fp.first_seen if fp else None,
                "last_seen": fp.last_seen if fp else None,
                "labels": [label_dict(lb) for lb in labels.get(ref, [])],
                # For a Dovecot hash: the OpenSSL profiles under which a captured hello gives
                # it (empty: no capture recorded it).
                "dovecot_profiles": sorted(variants.get(ref[1], {}).get("profiles", ()))
                if ref[0] == "ja3_dovecot"
                else [],
            }
        )
    me = family[0]
    users = sorted(
        accounts.values(),
        key=lambda a: max(a["last_seen"] or 0, a["last_failure"] or 0),
        reverse=True,
    )
    return {
        **me,
        "known": bool(fps or labels or users),
        "family": family[1:],
        # The same, as bare (kind, value) pairs.
        "same_hello": [[f["kind"], f["value"]] for f in family[1:]],
        "users": users,
        "retained_sightings": retained,
        "recent_sightings": [
            {
                "ts": sg.ts,
                "sensor": sg.sensor,
                "src": sg.src,
                "sport": sg.sport,
                "dst": sg.dst,
                "dport": sg.dport,
                "sni": sg.sni,
                "tls_version": sg.tls_version,
            }
            for sg in recent[:sightings]
        ],
        "failures": {
            "window_seconds": window,
            "distinct_accounts": rep.distinct_failed_accounts,
            "failures": rep.failures,
            # The scope "everywhere" of the reputation rules (ja3svc.policy.engine): failed
            # accounts that exist, the networks they failed from, and the accounts that logged
            # in successfully with the fingerprint in the window.
            "counted_accounts": rep.counted_failed_accounts,
            "networks": rep.failed_networks,
            "succeeded_accounts": rep.succeeded_accounts,
        },
    }
