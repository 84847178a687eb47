"""Profile-free matching of Dovecot's hash, profile detection and randomising clients.

Expected values come from the spec's published pair for gnutls-cli 3.7.9 with SNI (wire JA3
f35ce21b..., Dovecot's b7e9d913..., "Mutt 2.2.9, GnuTLS" in Dovecot's docs): the hello is the one
recorded in tests/pcaps/gnutls-cli-sni.pcap.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
from ja3svc.api.app import create_app
from ja3svc.capture.pcap_run import RunTotals, fingerprint_stream
from ja3svc.store.database import Database
from ja3svc.store.policy_store import PolicyStore
from ja3svc.store.sighting_writer import SightingWriter

from ja3svc.policy import (
    Action,
    CorrelatedFingerprints,
    FingerprintRef,
    PolicyConfig,
    PolicyInputs,
    RequestFacts,
    UserHistory,
    evaluate,
)
from ja3svc.policy.facts import dovecot_hash_history
from ja3svc.record import HelloRecord
from tests.support.api import (
    ADMIN,
    API_KEY,
    DOVECOT_HEADERS,
    AppClient,
    allow_24,
    make_settings,
    report_24,
)
from tests.support.paths import PCAPS

GNUTLS_WIRE_JA3 = "f35ce21b44ac0b87d3266294bb1b0e20"
GNUTLS_DOVECOT = "b7e9d913d85c071f5b806d59601e9b96"
AUTH = {**DOVECOT_HEADERS, "X-API-Key": API_KEY}
ADMIN_H = {"Authorization": f"Bearer {ADMIN}"}


def _records(name: str) -> list[dict]:
    out: list[dict] = []
    with open(PCAPS / name, "rb") as f:
        fingerprint_stream(f, name, lambda s, _frame: out.append(s.as_dict()), RunTotals())
    return [r for r in out if r["hello"] == "client"]


def _store(db: Database, records: list[dict]) -> None:
    with SightingWriter(db, sensor="file:test") as w:
        for r in records:
            w.add(HelloRecord.from_dict(r))


def test_index_maps_either_profiles_hash_to_the_hello(database: Database) -> None:
    records = _records("gnutls-cli-sni.pcap")
    assert records[0]["ja3_hash"] == GNUTLS_WIRE_JA3
    _store(database, records)
    store = PolicyStore.from_database(database)
    try:
        refs = store.dovecot_equivalents(GNUTLS_DOVECOT)
        assert ("ja3", GNUTLS_WIRE_JA3) in refs
        assert ("ja4", records[0]["ja4"]) in refs and ("ja3n", records[0]["ja3n_hash"]) in refs
        assert store.dovecot_equivalents("0" * 32) == ()
    finally:
        store.close()


def test_a_wire_ja3_label_applies_to_dovecots_hash_through_the_index(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    db = Database.from_url(settings.database_url)
    with AppClient(create_app(settings)) as client:
        label = {"kind": "ja3", "value": GNUTLS_WIRE_JA3, "action": "deny", "client_name": "x"}
        assert client.post("/api/v1/labels", json=label, headers=ADMIN_H).status_code == 201
        body = allow_24("ann", "s1", ja3=GNUTLS_DOVECOT)
        # Nothing captured yet: Dovecot's hash is not the wire JA3, the label cannot match.
        assert client.post("/?command=allow", content=body, headers=AUTH).json() == {"status": 0}
        _store(db, _records("gnutls-cli-sni.pcap"))
        client.app.state.service._equivalents = type(client.app.state.service._equivalents)(
            10, 5.0
        )  # forget the cached "no equivalents" answer
        got = client.post("/?command=allow", content=allow_24("ann", "s2", GNUTLS_DOVECOT),
                          headers=AUTH).json()  # fmt: skip
        assert got["status"] == -1
    db.dispose()


class _Lookup:
    def __init__(self, found: CorrelatedFingerprints) -> None:
        self.found = found
        self.hashes: list[str] = []

    def fingerprints_for(self, peer):  # pragma: no cover - the service awaits
        return self.found

    async def fingerprints_for_async(self, peer, dovecot_hash=""):
        self.hashes.append(dovecot_hash)
        return self.found


def _allow_with_peer(session: str, ja3: str) -> str:
    body = json.loads(allow_24("ann", session, ja3))
    body["conn"] = {"real_rip": "127.0.0.1", "real_rport": "40000"}
    return json.dumps(body, separators=(",", ":"))


def test_profile_detection_from_correlated_connections(tmp_path: Path) -> None:
    by_profile = {"openssl-3.0": "a" * 32, "openssl-3.2": "b" * 32}
    found = CorrelatedFingerprints((FingerprintRef("ja4", "t13d_x_y"),), by_profile)
    lookup = _Lookup(found)
    app = create_app(make_settings(tmp_path), connection_lookup=lookup)
    with AppClient(app) as client:
        assert client.get("/readyz").json()["dovecot_openssl_profile"]["profile"] is None
        for i in range(2):
            client.post("/?command=allow", content=_allow_with_peer(f"p{i}", "b" * 32),
                        headers=AUTH)  # fmt: skip
        ready = client.get("/readyz").json()["dovecot_openssl_profile"]
        assert ready["profile"] == "openssl-3.2" and ready["connections"]["openssl-3.2"] == 2
        client.post("/?command=allow", content=_allow_with_peer("p9", "c" * 32), headers=AUTH)
        stats = client.get("/api/v1/stats", headers=ADMIN_H).json()["dovecot_openssl_profile"]
        assert stats["connections"]["none"] == 1 and "warning" in stats
        metrics = client.get("/metrics").text
        # (The text format allows "2" and "2.0" alike.)
        assert re.search(r'_connections_total\{outcome="openssl-3.2"\} 2(\.0)?\n', metrics)
        assert re.search(r'_connections_total\{outcome="none"\} 1(\.0)?\n', metrics)
    # The lookup is given Dovecot's hash, to check the hello it finds against (port reuse).
    assert lookup.hashes == ["b" * 32, "b" * 32, "c" * 32]


# --- randomising clients -------------------------------------------------------------------

CFG = PolicyConfig(new_fingerprint_action=Action.REJECT, unknown_action=Action.TARPIT)


def _history(n: int, single: int) -> UserHistory:
    rows = [("ja3_dovecot", f"h{i}", 1 if i < single else 5, float(i)) for i in range(n)]
    s, r = dovecot_hash_history(rows)
    return UserHistory(frozenset((k, v) for k, v, _, _ in rows), sum(x[2] for x in rows), s, r)


def test_randomising_rule_is_bounded() -> None:
    new = RequestFacts("ann", fingerprints=(FingerprintRef("ja3_dovecot", "new"),))
    v = evaluate(PolicyInputs(new, history=_history(4, 4)), CFG)
    assert v.rule == "randomising_client" and v.action is Action.ALLOW
    assert "4 of the account's 4" in v.reasons[-1]
    # Too few single-use hashes, or mostly stable ones: the new-fingerprint rule applies.
    assert evaluate(PolicyInputs(new, history=_history(4, 2)), CFG).rule != "randomising_client"
    assert evaluate(PolicyInputs(new, history=_history(10, 3)), CFG).action is Action.REJECT
    # With a capture, the stable JA4 decides instead.
    correlated = new._replace(correlated=True)
    assert evaluate(PolicyInputs(correlated, history=_history(4, 4)), CFG).action is Action.REJECT
    off = PolicyConfig(new_fingerprint_action=Action.REJECT, randomising_min_hashes=0)
    assert evaluate(PolicyInputs(new, history=_history(4, 4)), off).action is Action.REJECT


@pytest.mark.parametrize("cached", [True, False])
def test_ten_logins_of_a_randomising_client_are_never_refused(tmp_path: Path, cached) -> None:
    policy = {"new_fingerprint_action": "reject", "unknown_action": "allow"}
    if not cached:
        policy["label_cache_seconds"] = 0.0
    with AppClient(create_app(make_settings(tmp_path, **policy))) as client:
        service = client.app.state.service
        for i in range(10):
            h = hashlib.md5(f"login{i}".encode()).hexdigest()  # a new hash every login
            got = client.post("/?command=allow", content=allow_24("ann", f"r{i}", h),
                              headers=AUTH).json()  # fmt: skip
            assert got == {"status": 0}, (i, got)
            client.post("/?command=report", content=report_24("ann", f"r{i}", True, h),
                        headers=AUTH)  # fmt: skip
            service.writer.flush(2.0)
        rules = [
            d["rule"]
            for d in client.get("/api/v1/decisions?username=ann&limit=50", headers=ADMIN_H).json()
            if d["command"] == "allow/before"
        ]
        assert "randomising_client" in rules and "new_fingerprint_for_user" not in rules


def test_database_correlation_keeps_every_profiles_hash(database: Database) -> None:
    """A separate capture's sightings carry Dovecot's hash under each profile, so a service
    polling the database (--correlate-db) can detect the profile like an in-process one. The
    capture is NSS against Debian 13's Dovecot 2.4.1: a HelloRetryRequest on every login, and
    Dovecot logged the second hello's hash (tests/pcaps/dovecot24)."""
    import asyncio

    from ja3svc.store.correlation import find_client_hello, fingerprint_refs

    name = "dovecot24/nss-imap-tls.pcap"
    logged = json.loads((PCAPS / name).with_suffix(".dovecot-log.json").read_text())
    records = _records(name)
    _store(database, records)
    for conn in logged["connections"]:
        src = next(r["src"] for r in records if r["sport"] == conn["sport"])
        found = asyncio.run(find_client_hello(database, src, conn["sport"], 0.0))
        assert found is not None and found.index == 2  # the hello after the retry
        refs = fingerprint_refs(found)
        assert refs.dovecot_hashes["openssl-3.2"] == conn["ja3_dovecot_hash"]
        assert ("ja3_dovecot", conn["ja3_dovecot_hash"]) in refs
