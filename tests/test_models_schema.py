"""The schema's own guarantees, on SQLite and PostgreSQL: uniqueness and value checks."""

from __future__ import annotations

import pytest
from ja3svc.store.models import Fingerprint, Label, UserFingerprint
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

V = "ada70206e40642a3e4461f35503241d5"


def _label(**kw) -> Label:
    base = {
        "kind": "ja3",
        "value": V,
        "action": "none",
        "source": "manual",
        "confidence": 50,
        "created_at": 1.0,
        "updated_at": 1.0,
    }
    return Label(**{**base, **kw})


def test_labels_of_several_sources_coexist(database):
    with database.session() as s:
        s.add_all([_label(source="manual"), _label(source="sslbl"), _label(source="trisul")])
    with database.session() as s:
        assert sorted(s.scalars(select(Label.source).where(Label.value == V))) == [
            "manual",
            "sslbl",
            "trisul",
        ]


@pytest.mark.parametrize(
    "rows",
    [
        [_label, _label],  # same (kind, value, source) twice
        [lambda: _label(action="explode")],
        [lambda: _label(confidence=101)],
        [lambda: _label(kind="ja5")],
        [lambda: _label(tarpit_seconds=-1)],
        [
            lambda: Fingerprint(kind="ja3", value=V, first_seen=1, last_seen=1, times_seen=1),
            lambda: Fingerprint(kind="ja3", value=V, first_seen=2, last_seen=2, times_seen=1),
        ],
        [
            lambda: UserFingerprint(
                username="a", kind="ja3", value=V, first_seen=1, last_seen=1, successes=1
            )
        ]
        * 2,
    ],
    ids=[
        "label-unique",
        "action",
        "confidence",
        "kind",
        "tarpit",
        "fingerprint-unique",
        "user-fingerprint-unique",
    ],
)
def test_constraints_refuse_bad_rows(database, rows):
    with pytest.raises(IntegrityError), database.session() as s:
        for make in rows:
            s.add(make())
            s.flush()
