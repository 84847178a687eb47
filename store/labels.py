"""Labels in the database: upsert (add and import), removal, listing, export rows.

A label is identified by (kind, value, source): importing a list again updates its rows, and
what different sources say about one fingerprint stays side by side.
"""

from __future__ import annotations

import re
import time
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ja3svc.store.database import Database
from ja3svc.store.models import Label
from ja3svc.store.queries import LABEL_COLUMNS, UNBOUNDED, Page, id_window_page
from sqlalchemy import delete, or_, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from ja3svc.label_formats import LabelRow, check_row, merge_duplicates

_LABELS = Label.__table__
# Rows per statement: stays under SQLite's bound-parameter limit (32766) with 11 columns.
_CHUNK = 1000


@dataclass(frozen=True, slots=True)
class LabelDefaults:
    """Values for what a row does not say (the list's source name, how far it is trusted)."""

    source: str = "manual"
    action: str = "none"
    confidence: int = 100
    tarpit_seconds: int | None = None


# What an import may change in an existing label (the key and timestamps aside).
_COMPARED = ("client_name", "category", "action", "tarpit_seconds", "confidence", "note")


@dataclass
class LabelChange:
    """One label an upsert adds or alters: ``before`` is None for a new one."""

    kind: str
    value: str
    source: str
    before: dict[str, object] | None
    after: dict[str, object]

    def describe(self) -> str:
        key = f"{self.kind} {self.value} [{self.source}]"
        if self.before is None:
            what = ", ".join(f"{f} {self.after[f]!r}" for f in _COMPARED if self.after[f])
            return f"new {key}: {what}"
        diff = ", ".join(
            f"{f} {self.before[f]!r} -> {self.after[f]!r}"
            for f in _COMPARED
            if self.before[f] != self.after[f]
        )
        return f"change {key}: {diff}"


@dataclass
class UpsertResult:
    inserted: int = 0
    updated: int = 0  # existing labels written again (their updated_at moves)
    kept: int = 0  # existing labels of a protected source, left as they were
    changes: list[LabelChange] = field(default_factory=list)  # new and altered labels

    @property
    def changed(self) -> int:
        return len(self.changes) - self.inserted


def _row_values(row: LabelRow, defaults: LabelDefaults, now: float) -> dict[str, object]:
    """The row's columns, defaults applied; InvalidLabel (nothing clipped) for a bad label."""
    action = row.action or defaults.action
    tarpit = row.tarpit_seconds if row.tarpit_seconds is not None else defaults.tarpit_seconds
    row = check_row(
        replace(
            row,
            action=action,
            tarpit_seconds=tarpit if action == "tarpit" else None,
            source=row.source or defaults.source,
            confidence=row.confidence if row.confidence is not None else defaults.confidence,
        )
    )
    # A list row has the label's columns (but its id); the times are the store's.
    return {
        **{c: getattr(row, c) for c in LABEL_COLUMNS},
        "created_at": row.created_at or now,
        "updated_at": now,
    }


def upsert_labels(
    db: Database,
    rows: Iterable[LabelRow],
    defaults: LabelDefaults | None = None,
    *,
    now: float | None = None,
    dry_run: bool = False,
    keep_sources: Collection[str] = (),
) -> UpsertResult:
    """Insert or update labels by (kind, value, source), all in one transaction.

    The result lists every label that is new or whose content changes; with ``dry_run`` that
    is all that happens (the transaction writes nothing). A row that ``check_label`` refuses
    raises its InvalidLabel before anything is written. Existing labels of ``keep_sources``
    are never changed (imports keep hands off `labels add`'s): such rows are only counted, in
    ``kept``.
    """
    defaults = defaults or LabelDefaults()
    now = time.time() if now is None else now
    # Default the source before merging, so "no source" and the default one are the same label.
    sourced = (r if r.source else replace(r, source=defaults.source) for r in rows)
    values = [_row_values(r, defaults, now) for r in merge_duplicates(sourced)]
    result = UpsertResult()
    with db.session(write=True) as session:
        for start in range(0, len(values), _CHUNK):
            chunk = values[start : start + _CHUNK]
            if keep_sources:
                chunk = _without_kept(session, chunk, keep_sources, result)
                if not chunk:
                    continue
            changes = _changes(session, chunk)
            result.changes.extend(changes)
            result.inserted += sum(1 for c in changes if c.before is None)
            if not dry_run:
                _upsert_chunk(session, chunk)
    result.updated = len(values) - result.inserted - result.kept
    return result


def _without_kept(
    session: Session,
    chunk: list[dict[str, object]],
    keep_sources: Collection[str],
    result: UpsertResult,
) -> list[dict[str, object]]:
    guarded = [(v["kind"], v["value"], v["source"]) for v in chunk if v["source"] in keep_sources]
    if not guarded:
        return chunk
    existing = {
        tuple(row)
        for row in session.execute(
            select(Label.kind, Label.value, Label.source).where(
                tuple_(Label.kind, Label.value, Label.source).in_(guarded)
            )
        )
    }
    kept = [v for v in chunk if (v["kind"], v["value"], v["source"]) in existing]
    result.kept += len(kept)
    return [v for v in chunk if (v["kind"], v["value"], v["source"]) not in existing]


def _changes(session: Session, chunk: list[dict[str, object]]) -> list[LabelChange]:
    keys = [(v["kind"], v["value"], v["source"]) for v in chunk]
    cols = [getattr(Label, c) for c in _COMPARED]
    existing = {
        tuple(row[:3]): dict(zip(_COMPARED, row[3:], strict=True))
        for row in session.execute(
            select(Label.kind, Label.value, Label.source, *cols).where(
                tuple_(Label.kind, Label.value, Label.source).in_(keys)
            )
        )
    }
    out = []
    for key, v in zip(keys, chunk, strict=True):
        after = {c: v[c] for c in _COMPARED}
        before = existing.get(key)
        if before != after:
            out.append(LabelChange(str(key[0]), str(key[1]), str(key[2]), before, after))
    return out


def _upsert_chunk(session: Session, chunk: list[dict[str, object]]) -> None:
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    ins = dialect.insert(_LABELS)
    updated = {
        c: ins.excluded[c]
        for c in (
            "client_name",
            "category",
            "action",
            "tarpit_seconds",
            "confidence",
            "note",
            "updated_at",
        )
    }
    stmt = ins.on_conflict_do_update(index_elements=["kind", "value", "source"], set_=updated)
    session.execute(stmt, chunk)


def remove_labels(
    db: Database, kind: str | None, value: str | None, source: str | None = None
) -> int:
    """Delete the labels matching every criterion given (``source`` alone undoes an import)."""
    if value is None and source is None:
        raise ValueError("remove_labels needs a value or a source")
    stmt = delete(Label)
    if kind is not None:
        stmt = stmt.where(Label.kind == kind)
    if value is not None:
        stmt = stmt.where(Label.value == value)
    if source is not None:
        stmt = stmt.where(Label.source == source)
    with db.session(write=True) as session:
        return session.execute(stmt).rowcount or 0


def find_labels(
    session: Session,
    *,
    kinds: Sequence[str] | None = None,
    value: str | None = None,
    source: str | None = None,
    action: str | None = None,
    limit: int | None = None,
) -> list[Label]:
    stmt = select(Label).order_by(Label.kind, Label.value, Label.source)
    if kinds:
        stmt = stmt.where(Label.kind.in_(kinds))
    if value is not None:
        stmt = stmt.where(Label.value == value)
    if source is not None:
        stmt = stmt.where(Label.source == source)
    if action is not None:
        stmt = stmt.where(Label.action == action)
    if limit is not None:
        stmt = stmt.limit(limit)
    return list(session.scalars(stmt))


def as_row(label: Label) -> LabelRow:
    return LabelRow(
        kind=label.kind,
        value=label.value,
        client_name=label.client_name,
        category=label.category,
        action=label.action,
        tarpit_seconds=label.tarpit_seconds,
        source=label.source,
        confidence=label.confidence,
        note=label.note,
        created_at=label.created_at,
        updated_at=label.updated_at,
    )


# Label ids one page of the label list reads at most (see queries.id_window_page).
LABEL_SCAN = 50_000
# Six or more hex digits: a hash prefix, looked up through the value index, not in names.
_HEX_PREFIX = re.compile(r"[0-9a-f]{6,32}")


@dataclass(frozen=True)
class LabelFilter:
    """What a label listing is narrowed to (None: any). ``q`` matches a value prefix (any
    kind) or a client name containing it, case-insensitively."""

    kind: str | None = None
    value: str | None = None
    source: str | None = None
    action: str | None = None
    q: str | None = None
    # Set by label_page from the session's dialect (see conditions).
    sqlite: bool = True

    def conditions(self) -> list[Any]:
        out: list[Any] = []
        if self.kind:
            out.append(Label.kind == self.kind)
        if self.value:
            out.append(Label.value == self.value)
        if self.source:
            out.append(Label.source == self.source)
        if self.action:
            out.append(Label.action == self.action)
        if self.q:
            q = self.q.strip()
            if _HEX_PREFIX.fullmatch(q.lower()):
                # A hash prefix: a range on the value index (byte order on SQLite, whose LIKE
                # ignores case and so cannot use it; LIKE on PostgreSQL, whose collations do
                # not sort by bytes).
                prefix = q.lower()
                out.append(
                    Label.value.startswith(prefix, autoescape=True)
                    if not self.sqlite
                    else (Label.value >= prefix) & (Label.value < prefix + "\x7f")
                )
            else:
                out.append(
                    or_(
                        Label.value.startswith(q, autoescape=True),
                        Label.client_name.icontains(q, autoescape=True),
                    )
                )
        return out


def label_page(
    session: Session, filters: LabelFilter, limit: int = 50, before: int | None = None
) -> Page:
    """Labels matching ``filters``, newest first, ids below ``before`` (bounded per call)."""
    filters = replace(filters, sqlite=session.get_bind().dialect.name == "sqlite")
    # An index answers these newest first by itself ((source, id), (action, id), value):
    # no window needed. A name search reads LABEL_SCAN labels per page.
    q = (filters.q or "").strip().lower()
    by_value = bool(filters.value or (q and _HEX_PREFIX.fullmatch(q)))
    indexed = by_value or bool(filters.source or filters.action)
    scan = UNBOUNDED if indexed else LABEL_SCAN
    return id_window_page(
        session, Label, filters.conditions(), limit, before, scan, sort_found=by_value
    )
