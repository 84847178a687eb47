"""One read API (store.queries) behind `ja3svc fingerprints` and /api/v1/fingerprints: for the
same database (SQLite and PostgreSQL) both give the same answers, the API with its times in
ISO-8601, and refuse the same bad values with the same reason."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import quote

import pytest
from ja3svc.api.app import create_app
from ja3svc.api.routes.admin import isotimes
from ja3svc.store.policy_store import PolicyStore
from ja3svc.store.sighting_writer import SightingWriter

from ja3svc.record import HelloRecord
from tests.support.api import ADMIN, AppClient, make_settings
from tests.support.cli import run_cli
from tests.support.database import synthetic_record, url_of

ADMIN_H = {"X-Admin-Token": ADMIN}


@pytest.fixture
def stored(database, tmp_path):
    """Sightings of three clients (one seen more), a label, failed and successful logins."""
    records = [synthetic_record(i, client=i % 3) for i in range(30)]
    records += [synthetic_record(100 + i, client=1) for i in range(5)]
    with SightingWriter(database, sensor="file:t.pcap") as w:
        for r in records:
            w.add(HelloRecord.from_dict(r))
    ja3 = [records[i]["ja3_hash"] for i in range(3)]
    status, _, err = run_cli(
        "labels", "add", ja3[0], "--client", "Thunderbird 128", "--category", "mail-client",
        "--database-url", url_of(database),
    )  # fmt: skip
    assert status == 0, err
    now = time.time()
    failures = [(now - i, f"user{i}", ("ja3", ja3[2]), "", "") for i in range(4)]
    failures += [(now, "user9", ("ja3", ja3[1]), "", "")] * 2
    successes = [(now, "alice", ("ja3", ja3[0])), (now, "bob", ("ja3", ja3[0]))]
    PolicyStore.from_database(database).write_batch(successes, failures, [])
    with AppClient(create_app(make_settings(tmp_path), database=database)) as client:
        yield records, ja3, client


def cli(database, *argv: str) -> Any:
    status, out, err = run_cli("fingerprints", *argv, "--json", "--database-url", url_of(database))
    assert status == 0, err
    return json.loads(out)


def api(client, url: str) -> Any:
    r = client.get(url, headers=ADMIN_H)
    assert r.status_code == 200, r.text
    return r.json()


def test_top_is_the_same(database, stored):
    _records, ja3, client = stored
    seen = cli(database, "top", "--kind", "ja3")
    assert seen[0]["value"] == ja3[1] and seen[0]["times_seen"] == 15  # 10 + 5
    assert next(t for t in seen if t["value"] == ja3[0])["labels"] == "Thunderbird 128"
    assert isotimes(seen) == api(client, "/api/v1/fingerprints/top?kind=ja3")
    failing = cli(database, "top", "--kind", "ja3", "--by", "failures")
    assert [(t["value"], t["distinct_accounts"], t["failures"]) for t in failing] == [
        (ja3[2], 4, 4),
        (ja3[1], 1, 2),
    ]
    assert failing == api(client, "/api/v1/fingerprints/top?kind=ja3&by=failures")


@pytest.mark.parametrize(
    "text",
    ["thunder", "THUNDERBIRD 128", "mail-client", "4865-4866-2,", "%", "_", "771"],
)
def test_search_is_the_same(database, stored, text):
    records, ja3, client = stored
    hits = cli(database, "search", text)
    assert isotimes(hits) == api(client, f"/api/v1/fingerprints?q={quote(text)}")
    in_kind = cli(database, "search", text, "--kind", "ja3")
    assert isotimes(in_kind) == api(client, f"/api/v1/fingerprints?q={quote(text)}&kind=ja3")
    expected = {
        "thunder": {("ja3", ja3[0])},
        "THUNDERBIRD 128": {("ja3", ja3[0])},
        "mail-client": {("ja3", ja3[0])},
        # In the full strings of client 2's JA3, JA3N and Dovecot JA3 (JA3S: none stored).
        "4865-4866-2,": {
            ("ja3", records[2]["ja3_hash"]),
            ("ja3n", records[2]["ja3n_hash"]),
            ("ja3_dovecot", records[2]["ja3_dovecot_hash"]),
        },
        "%": set(),  # literal, not a wildcard
        # Literal too: the JA4s, whose raw strings (ja4_r) contain it, and nothing else.
        "_": {("ja4", r["ja4"]) for r in records},
    }
    if text in expected:
        assert {(h["kind"], h["value"]) for h in hits} == expected[text]
    else:  # every JA3-family string starts with the version
        assert len(hits) == 9 and hits[0]["value"] in {r["ja3_hash"] for r in records} | {
            r[k] for r in records for k in ("ja3n_hash", "ja3_dovecot_hash")
        }


def test_lookup_is_the_same(database, stored):
    _records, ja3, client = stored
    for value in (ja3[0], ja3[0].upper(), ja3[2]):
        [shown] = cli(database, "show", value, "--kind", "ja3")
        looked_up = api(client, f"/api/v1/fingerprints/ja3/{value}")
        assert isotimes(shown) == looked_up
    [d] = cli(database, "show", ja3[0], "--kind", "ja3")
    assert d["labels"][0]["client_name"] == "Thunderbird 128" and d["retained_sightings"] == 10
    assert sorted(u["username"] for u in d["users"]) == ["alice", "bob"]
    [d] = cli(database, "show", ja3[2], "--kind", "ja3")
    assert (d["failures"]["distinct_accounts"], d["failures"]["failures"]) == (4, 4)


@pytest.mark.parametrize(
    ("kind", "value", "reason"),
    [("ja3", "xyz", "invalid MD5 hash 'xyz'"), ("ja4", "abc", "invalid JA4 fingerprint 'abc'")],
)
def test_bad_values_are_refused_the_same(database, stored, kind, value, reason):
    _records, _ja3, client = stored
    status, out, err = run_cli(
        "fingerprints", "show", value, "--kind", kind, "--database-url", url_of(database)
    )
    assert (status, out, err) == (1, "", f"ja3svc fingerprints show: {reason}\n")
    r = client.get(f"/api/v1/fingerprints/{kind}/{value}", headers=ADMIN_H)
    assert (r.status_code, r.json()) == (422, {"error": "invalid", "reason": reason})
