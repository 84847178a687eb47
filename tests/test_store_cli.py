"""`ja3svc fingerprints` and `ja3svc db prune|replay-spool` on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from ja3svc.store.sighting_writer import SightingWriter

from ja3svc.record import HelloRecord
from tests.support.cli import run_cli
from tests.support.database import synthetic_record, url_of


def _store(database, n: int = 30) -> list[dict]:
    records = [synthetic_record(i, client=i % 3) for i in range(n)]
    with SightingWriter(database, sensor="file:t.pcap") as w:
        for r in records:
            w.add(HelloRecord.from_dict(r))
    return records


def fp_cli(database, *argv: str) -> tuple[int, str, str]:
    return run_cli("fingerprints", *argv, "--database-url", url_of(database))


def test_top_show_search(database):
    records = _store(database)
    ja3 = records[0]["ja3_hash"]
    run_cli(
        "labels",
        "add",
        ja3,
        "--client",
        "Thunderbird 128",
        "--category",
        "mail-client",
        "--database-url",
        url_of(database),
    )

    status, out, _ = fp_cli(database, "top", "--kind", "ja3", "--json")
    assert status == 0
    top = json.loads(out)
    assert [t["times_seen"] for t in top] == [10, 10, 10]
    assert {t["value"] for t in top} == {records[i]["ja3_hash"] for i in range(3)}
    assert next(t for t in top if t["value"] == ja3)["labels"] == "Thunderbird 128"

    status, out, _ = fp_cli(database, "top", "-n", "2")
    assert status == 0 and len(out.splitlines()) == 3  # header + 2

    status, out, _ = fp_cli(database, "show", ja3.upper(), "--json")
    assert status == 0
    details = {d["kind"]: d for d in json.loads(out)}
    # The same MD5 is looked up under every JA3-family kind; here it is a JA3 only.
    assert set(details) == {"ja3"}
    d = details["ja3"]
    assert d["full_string"] == records[0]["ja3"] and d["times_seen"] == 10
    assert d["retained_sightings"] == 10 and len(d["recent_sightings"]) == 10
    assert d["labels"][0]["client_name"] == "Thunderbird 128"
    status, out, _ = fp_cli(database, "show", ja3)
    assert status == 0 and "label:" in out and "sighting:" in out

    status, out, _ = fp_cli(database, "search", "thunderbird", "--json")
    assert status == 0 and [h["value"] for h in json.loads(out)] == [ja3]
    status, out, _ = fp_cli(database, "search", ja3[:8], "--json")
    assert ja3 in {h["value"] for h in json.loads(out)}
    status, out, _ = fp_cli(database, "search", "4865-4866-2,", "--json")  # in the full string
    assert {h["value"] for h in json.loads(out)} == {
        records[2]["ja3_hash"],
        records[2]["ja3n_hash"],
        records[2]["ja3_dovecot_hash"],
    }

    status, _, err = fp_cli(database, "show", "0" * 32)
    assert status == 1 and "neither seen nor labelled" in err


def test_db_prune_and_replay_spool(database, tmp_path, monkeypatch):
    _store(database)
    status, out, _ = run_cli("db", "prune", "--days", "1", "--database-url", url_of(database))
    assert status == 0 and "sightings: 30 deleted" in out
    status, out, _ = fp_cli(database, "top", "--kind", "ja3", "--json")
    assert sum(t["times_seen"] for t in json.loads(out)) == 30  # aggregates kept

    # A spool left by an outage is stored by `db replay-spool`.
    from ja3svc.store.database import Database

    spool = tmp_path / "data" / "spool"
    down = Database.from_url("postgresql+psycopg://postgres@127.0.0.1:1/none")
    w = SightingWriter(down, sensor="mx1", spool_dir=spool)
    w.add(HelloRecord.from_dict(synthetic_record(5000)))
    assert w.close().spooled == 1
    down.dispose()
    monkeypatch.setenv("JA3SVC_DATA_DIR", str(tmp_path / "data"))
    status, out, _ = run_cli("db", "replay-spool", "--database-url", url_of(database))
    assert status == 0 and "replayed 1 sightings (1 new)" in out
    assert not list(spool.glob("*.jsonl"))


def test_unreachable_database_is_one_line_and_exit_1():
    status, out, err = run_cli(
        "fingerprints", "top", "--database-url", "postgresql://postgres@127.0.0.1:1/none"
    )
    assert status == 1 and out == ""
    assert (
        err.startswith("ja3svc fingerprints top: database error: ") and len(err.splitlines()) == 1
    )


@pytest.mark.parametrize(
    "argv",
    [
        ("fingerprints", "top"),
        ("db", "upgrade"),
        ("pcap", "-q", "--store", "tests/pcaps/curl-https.pcap"),
        ("serve", "--port", "1"),
    ],
    ids=["fingerprints", "db", "pcap-store", "serve"],
)
def test_a_database_other_than_sqlite_or_postgresql_is_refused_in_one_line(argv, tmp_path):
    """Another dialect's URL names the two databases ja3svc stores into, instead of failing
    with the traceback of a missing driver module (MySQLdb here)."""
    status, out, err = run_cli(*argv, "--database-url", "mysql://ja3svc@127.0.0.1/fp")
    assert status == 1 and out == ""
    assert err.endswith(": ja3svc stores its data in SQLite or PostgreSQL, not mysql\n")
    assert len(err.splitlines()) == 1


def test_capture_into_an_in_memory_database_is_refused_before_capturing(tmp_path):
    """The sighting writer has a connection of its own, which an in-memory SQLite database
    would not share: `capture` says so before opening an interface."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JA3SVC_")} | {
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "HOME": str(tmp_path),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "ja3svc.cli.main", "capture", "-i", "lo", "--database-url",
         "sqlite://"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr == (
        "ja3svc capture: sightings cannot be stored in an in-memory SQLite database\n"
    )
