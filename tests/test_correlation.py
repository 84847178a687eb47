"""Connection correlation without any network: the table shared with a capture thread, the
database lookup and the object the policy service plugs in (the table itself:
tests/unit/test_connections.py). The database tests run on SQLite and on the real PostgreSQL
(``database`` fixture in conftest.py).
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from ja3svc.capture.live_source import _compile_filter, default_filter
from ja3svc.capture.shared_connections import SharedConnections
from ja3svc.store.correlation import ConnectionFingerprints, find_client_hello
from ja3svc.store.sighting_writer import SightingWriter

from ja3svc.connections import RecentConnections
from ja3svc.policy import ConnectionPeer, FingerprintRef
from ja3svc.record import HelloRecord
from tests.support.hellos import T0, client_hello

# --- the table shared with a capture thread, and waited on by the async lookup ------------------


def test_lookup_returns_as_soon_as_the_hello_arrives():
    table = SharedConnections(RecentConnections())
    timer = threading.Timer(0.2, table.put, args=(client_hello("198.51.100.7", 50000, T0),))
    timer.start()
    try:
        started = time.monotonic()
        waiting = ConnectionFingerprints(table, None, wait_seconds=5.0)
        found = asyncio.run(waiting.lookup("198.51.100.7", 50000, now=T0))
        assert found is not None
        assert time.monotonic() - started < 4.0  # found by a poll, not at the timeout
        brief = ConnectionFingerprints(table, None, wait_seconds=0.05)
        assert asyncio.run(brief.lookup("198.51.100.7", 1, now=T0)) is None
    finally:
        timer.cancel()


def test_concurrent_puts_and_lookups():
    table = SharedConnections(RecentConnections(max_entries=500, window_seconds=10**9))
    errors: list[BaseException] = []

    def writer(base: int) -> None:
        try:
            for i in range(2000):
                table.put(client_hello("198.51.100.7", base + i % 700, T0 + i, 1))
        except BaseException as exc:
            errors.append(exc)

    def reader() -> None:
        try:
            for i in range(2000):
                table.get("198.51.100.7", 1024 + i % 700, now=T0 + i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(1024,)) for _ in range(3)]
    threads += [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert len(table) <= 500


# --- kernel filter ----------------------------------------------------------------------------


def test_default_filter_is_client_side_ports_not_payload():
    expr = default_filter([443, 993, 143])
    assert expr == "tcp and (dst port 443 or dst port 993 or dst port 143)"
    assert "0x16" not in expr and "tcp[" not in expr  # payload tests lose continuation segments
    with pytest.raises(ValueError):
        default_filter([])
    with pytest.raises(ValueError):
        default_filter([70000])


def test_compiled_filter_keeps_snaplen_bytes():
    import struct

    fprog, buf = _compile_filter(default_filter([443]), 1, 4096)
    count = struct.unpack_from("@H", fprog)[0]
    insns = [struct.unpack_from("=HBBI", buf.raw, 8 * i) for i in range(count)]
    accepts = [k for code, _, _, k in insns if code == 0x06 and k]
    assert accepts and set(accepts) == {4096}


# --- database lookup --------------------------------------------------------------------------


def _store(db, records, tmp_path) -> None:
    with SightingWriter(db, sensor="test", spool_dir=tmp_path / "spool") as writer:
        for r in records:
            writer.add(HelloRecord.from_dict(r))


def _find(database, ip, port, since_ts, wait_seconds):
    return asyncio.run(find_client_hello(database, ip, port, since_ts, wait_seconds))


def test_find_client_hello_returns_last_hello_of_the_peer(database, make_record, tmp_path):
    first = make_record(1, client=1)
    src, sport = first["src"], first["sport"]
    second = {**make_record(1, client=2), "ts": first["ts"] + 0.002, "index": 2}
    other = make_record(2, client=3)  # another connection
    _store(database, [first, second, other], tmp_path)

    found = _find(database, src, sport, first["ts"] - 10, 0)
    assert found is not None
    assert found.index == 2
    assert found.fingerprints.ja3_hash == second["ja3_hash"]
    # Full strings come back from the fingerprints table.
    assert found.fingerprints.ja3 == second["ja3"]
    assert found.fingerprints.ja3_dovecot == second["ja3_dovecot"]
    assert found.fingerprints.ja4_r == second["ja4_r"]
    assert list(found.alpn) == ["imap"]
    # Too old for the window, or another port: nothing.
    assert _find(database, src, sport, second["ts"] + 1, 0) is None
    assert _find(database, src, sport + 1, 0, 0) is None
    # Dovecot on a dual-stack socket reports IPv4 peers IPv4-mapped.
    assert _find(database, f"::ffff:{src}", sport, 0, 0) is not None


def test_find_client_hello_waits_for_a_late_batch(database, make_record, tmp_path):
    record = make_record(5)
    timer = threading.Timer(0.3, _store, args=(database, [record], tmp_path))
    timer.start()
    try:
        started = time.monotonic()
        found = _find(database, record["src"], record["sport"], 0, wait_seconds=5)
        waited = time.monotonic() - started
    finally:
        timer.join(10)
    assert found is not None and found.fingerprints.ja3_hash == record["ja3_hash"]
    assert waited < 4.5  # found by a poll, not at the deadline


def test_find_client_hello_gives_up_after_the_wait(database):
    started = time.monotonic()
    assert _find(database, "198.51.100.9", 4242, 0, wait_seconds=0.3) is None
    waited = time.monotonic() - started
    assert 0.25 <= waited < 3.0  # bounded: the policy must answer Dovecot within 2 s


def test_connection_fingerprints_memory_then_database(database, make_record, tmp_path):
    in_db = make_record(7, client=7)
    _store(database, [in_db], tmp_path)
    recent = RecentConnections(window_seconds=300)
    in_memory = {**make_record(8, client=8)}
    recent.put(HelloRecord.from_dict(in_memory))
    now = in_memory["ts"] + 1
    lookup = ConnectionFingerprints(recent, database, window_seconds=300, wait_seconds=0.05)

    def look(ip, port):
        return asyncio.run(lookup.lookup(ip, port, now))

    assert look(in_memory["src"], in_memory["sport"]).fingerprints.ja3 == in_memory["ja3"]
    from_db = look(in_db["src"], in_db["sport"])
    assert from_db is not None and from_db.fingerprints.ja3_hash == in_db["ja3_hash"]
    assert look("198.51.100.250", 9) is None
    assert lookup.stats == {
        "memory_hits": 1,
        "database_hits": 1,
        "mismatches": 0,
        "misses": 1,
        "database_errors": 0,
    }


def test_fingerprints_for_speaks_the_policy_protocol(make_record):
    record = make_record(3, client=3)
    recent = RecentConnections(window_seconds=10**10)
    recent.put(HelloRecord.from_dict(record))
    lookup = ConnectionFingerprints(recent, None, window_seconds=10**10, wait_seconds=0)

    def fingerprints_for(peer):
        return asyncio.run(lookup.fingerprints_for_async(peer))

    refs = fingerprints_for(ConnectionPeer(record["src"], record["sport"]))
    assert refs == (
        FingerprintRef("ja3", record["ja3_hash"]),
        FingerprintRef("ja3_dovecot", record["ja3_dovecot_hash"]),
        FingerprintRef("ja3n", record["ja3n_hash"]),
        FingerprintRef("ja4", record["ja4"]),
    )
    assert fingerprints_for(ConnectionPeer(record["src"], None)) == ()
    assert fingerprints_for(ConnectionPeer("198.51.100.250", 1)) == ()


def test_a_reused_port_waits_for_the_hello_that_gives_dovecots_hash(make_record):
    """A peer port reused (a later connection, or another user behind the same NAT): the table
    still holds the earlier connection's hello while this one's is on its way. With Dovecot's
    hash the lookup waits for the hello that gives it instead of taking the stale one."""
    stale = make_record(5, client=1)
    fresh = {**make_record(5, client=2), "ts": stale["ts"] + 30}
    assert (stale["src"], stale["sport"]) == (fresh["src"], fresh["sport"])
    assert stale["ja3_dovecot_hash"] != fresh["ja3_dovecot_hash"]
    table = SharedConnections(RecentConnections(window_seconds=10**10))
    table.put(HelloRecord.from_dict(stale))
    lookup = ConnectionFingerprints(table, None, window_seconds=10**10, wait_seconds=5.0)
    peer = ConnectionPeer(fresh["src"], fresh["sport"])
    timer = threading.Timer(0.2, table.put, args=(HelloRecord.from_dict(fresh),))
    timer.start()
    try:
        started = time.monotonic()
        refs = asyncio.run(lookup.fingerprints_for_async(peer, fresh["ja3_dovecot_hash"]))
        assert time.monotonic() - started < 4.0  # found by a poll, not at the deadline
    finally:
        timer.cancel()
    assert FingerprintRef("ja3", fresh["ja3_hash"]) in refs
    assert FingerprintRef("ja3", stale["ja3_hash"]) not in refs
    assert lookup.stats["memory_hits"] == 1 and lookup.stats["mismatches"] == 0
    # Without a hash to check (Dovecot 2.3) the latest hello of the peer is the answer.
    assert FingerprintRef("ja3", fresh["ja3_hash"]) in asyncio.run(
        lookup.fingerprints_for_async(peer)
    )


@pytest.mark.parametrize("source", ["memory", "database"])
def test_a_hello_that_does_not_give_dovecots_hash_decides_nothing(
    source, database, make_record, tmp_path
):
    """No hello of the peer gives Dovecot's hash by the deadline: no fingerprint of it reaches
    the policy (it may be another connection's), but its hashes by profile do, so the service
    counts the connection as one no profile explains; and the lookup counts a mismatch."""
    record = make_record(9, client=4)
    recent = None
    if source == "memory":
        recent = RecentConnections(window_seconds=10**10)
        recent.put(HelloRecord.from_dict(record))
    else:
        _store(database, [record], tmp_path)
    lookup = ConnectionFingerprints(
        recent, database if source == "database" else None, window_seconds=10**10,
        wait_seconds=0.2,
    )  # fmt: skip
    peer = ConnectionPeer(record["src"], record["sport"])
    started = time.monotonic()
    found = asyncio.run(lookup.fingerprints_for_async(peer, "f" * 32))
    assert 0.15 <= time.monotonic() - started < 3.0  # waited for a matching one, bounded
    assert tuple(found) == ()
    assert found.dovecot_hashes == record["ja3_dovecot_hashes"]
    assert lookup.stats["mismatches"] == 1 and lookup.stats["misses"] == 0
    hit = asyncio.run(lookup.fingerprints_for_async(peer, record["ja3_dovecot_hash"]))
    assert FingerprintRef("ja3", record["ja3_hash"]) in hit


def test_unreachable_database_is_a_miss_not_an_error():
    from ja3svc.store.database import Database

    db = Database.from_url("postgresql+psycopg://postgres@127.0.0.1:1/none", upgrade=False)
    try:
        lookup = ConnectionFingerprints(None, db, wait_seconds=0)
        assert asyncio.run(lookup.lookup("198.51.100.7", 50000)) is None
        assert lookup.stats["database_errors"] == 1
    finally:
        db.dispose()


def test_default_filter_adds_the_client_side_of_quic():
    expr = default_filter([443, 993], [443])
    assert expr == "(tcp and (dst port 443 or dst port 993)) or (udp and (dst port 443))"
    fprog, _buf = _compile_filter(expr, 1, 4096)  # libpcap accepts it
    assert fprog
    assert default_filter([], [443]) == "udp and (dst port 443)"
