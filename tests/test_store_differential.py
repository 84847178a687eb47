"""The database rows of the Rust engine against the pure-Python reference.

``ja3svc pcap --store`` on the Rust engine stores rows built in Rust (``store_row`` in
native/engine), the Python engine rows built by ``sighting_writer.sighting_row`` from its
records. For every golden capture, the FoxIO conformance captures and generated captures, the
rows must be equal column for column (the sensor name is made long and given a NUL, so that the
clipping is compared too); and storing every golden capture through each engine must leave the
same database contents (sightings, fingerprint aggregates, Dovecot hashes) on SQLite and on
PostgreSQL.

The extension must be built: a missing one fails here rather than skipping.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from ja3svc.capture.pcap_run import RunTotals, fingerprint_stream, fingerprint_stream_native
from ja3svc.store.database import Database
from ja3svc.store.models import DovecotHash, Fingerprint, Sighting
from ja3svc.store.sighting_writer import ROW_COLUMNS, SightingWriter, sighting_row
from sqlalchemy import delete, select

from ja3svc import _native
from ja3svc.engine import FingerprintEngine
from ja3svc.flow_table import FlowTable
from ja3svc.record import HelloRecord
from tests.test_native_differential import _FOXIO, _REAL, generated_capture

# Over the column's 200 characters, with a NUL: clipped and escaped the same by both.
ODD_SENSOR = "file:caf\u00e9\x00" + "x" * 250
PROFILE = "openssl-3.2"


def python_rows(data: bytes, sensor: str) -> list[tuple[Any, ...]]:
    records: list[HelloRecord] = []
    engine = FingerprintEngine(FlowTable(200_000, 300.0), dovecot_profile=PROFILE)
    fingerprint_stream(
        io.BytesIO(data), "cap", lambda s, _frame: records.append(s), RunTotals(), engine=engine
    )
    return [sighting_row(sensor, r.as_dict()) for r in records]


def native_rows(data: bytes, sensor: str) -> list[tuple[Any, ...]]:
    """Both ways the Rust engine hands rows over: beside JSON text (Rust reading the file) and
    beside dicts (fed by Python); they must agree."""
    beside_json: list[tuple[Any, ...]] = []
    with tempfile.NamedTemporaryFile() as tmp:
        tmp.write(data)
        tmp.flush()
        with open(tmp.name, "rb") as fh:
            fingerprint_stream_native(
                fh, "cap", RunTotals(), PROFILE, write_json=lambda _text: None,
                store=beside_json.extend, store_sensor=sensor, path=tmp.name,
            )  # fmt: skip
    beside_dicts: list[tuple[Any, ...]] = []
    fingerprint_stream_native(
        io.BytesIO(data), "cap", RunTotals(), PROFILE, sink=lambda _d: None,
        store=beside_dicts.extend, store_sensor=sensor,
    )  # fmt: skip
    assert beside_json == beside_dicts
    return beside_json


def assert_same_rows(data: bytes, sensor: str = ODD_SENSOR) -> list[tuple[Any, ...]]:
    ref = python_rows(data, sensor)
    got = native_rows(data, sensor)
    assert all(len(r) == len(ROW_COLUMNS) for r in got)
    for n, (a, b) in enumerate(zip(got, ref, strict=True)):
        diff = {c: (x, y) for c, x, y in zip(ROW_COLUMNS, a, b, strict=True) if x != y}
        assert not diff, f"row {n}: {diff}"
    return ref


def test_the_columns_are_the_same() -> None:
    assert tuple(_native.STORE_COLUMNS) == ROW_COLUMNS


@pytest.mark.parametrize("path", _REAL + _FOXIO, ids=lambda p: p.name)
def test_capture_rows(path: Path) -> None:
    assert_same_rows(path.read_bytes())


def test_rows_carry_what_the_aggregates_need() -> None:
    """Not vacuous: the golden captures give both hello kinds, full strings, Dovecot keys and
    ALPN lists, so the comparisons above compared them."""
    rows = [r for p in _REAL for r in python_rows(p.read_bytes(), "s")]
    col = {c: i for i, c in enumerate(ROW_COLUMNS)}
    assert {r[col["hello"]] for r in rows} == {"client", "server"}
    assert any(r[col["dovecot_openssl30"]] for r in rows)
    assert any(r[col["ja3s"]] for r in rows) and any(r[col["ja4_r"]] for r in rows)
    assert any(r[col["alpn"]] not in (None, "[]") for r in rows)
    assert any(r[col["sni"]] for r in rows)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(generated_capture())
def test_generated_capture_rows(case: tuple[bytes, int]) -> None:
    # SNI with any characters (NUL excepted), ALPN of any bytes, hellos of any shape.
    assert_same_rows(case[0])


def _contents(db: Database) -> dict[str, list[tuple[Any, ...]]]:
    out = {}
    for model in (Sighting, Fingerprint, DovecotHash):
        cols = [c for c in model.__table__.columns if not c.primary_key]
        with db.session() as s:
            out[model.__tablename__] = sorted(tuple(r) for r in s.execute(select(*cols)).all())
    return out


def _store(db: Database, engine: str) -> dict[str, list[tuple[Any, ...]]]:
    for path in _REAL:
        with SightingWriter(db, sensor=f"file:{path.name}", batch_size=50) as w:
            if engine == "python":
                with open(path, "rb") as fh:
                    fingerprint_stream(
                        fh, path.name, lambda s, _frame: w.add(s), RunTotals(),
                        dovecot_profile=PROFILE,
                    )  # fmt: skip
            else:
                with open(path, "rb") as fh:
                    fingerprint_stream_native(
                        fh, path.name, RunTotals(), PROFILE, sink=lambda _d: None,
                        store=w.add_rows, store_sensor=w.sensor, path=str(path),
                    )  # fmt: skip
    return _contents(db)


def test_both_engines_store_the_same_database(database: Database) -> None:
    by_python = _store(database, "python")
    assert len(by_python["sightings"]) > 100 and by_python["dovecot_hashes"]
    # Storing again through the other engine changes nothing: same rows, same keys.
    assert _store(database, "native") == by_python
    with database.session(write=True) as s:
        for model in (Sighting, Fingerprint, DovecotHash):
            s.execute(delete(model))
    assert _store(database, "native") == by_python
