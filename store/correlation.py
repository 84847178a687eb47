"""Which ClientHello came from the TCP peer a policy request names (``real_rip``/``real_rport``)?

Two sources, one answer shape (the engine's ``HelloRecord``), both asked without blocking the
event loop:

- ``find_client_hello``: the database, for capture workers on other hosts sharing a PostgreSQL
  with the service. The worker commits a batch at least every second, so the lookup polls a
  few times, with a bounded total wait, before giving up.
- ``ConnectionFingerprints``: what the policy service plugs in. It asks the in-memory
  ``RecentConnections`` table of a capture running in the same process first (instant), and
  the database after that (another sensor, or a restart emptied the memory).

Dovecot keeps the LAST ClientHello of a connection (after a HelloRetryRequest the client sends
a second one), so among the hellos of the connection the highest index wins.

An address and port name a connection only loosely: ports are reused (behind a NAT by other
users too), and the capture may still be on its way with this connection's hello while an older
one from the same peer sits in the table. When Dovecot sent its own hash (2.4), a hello counts
only if it gives that hash under some OpenSSL profile (``_Expect``): the lookup waits for such a
hello within its deadline, and otherwise reports the hello it has as not matching.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any, Protocol

from ja3svc.store.database import Database
from ja3svc.store.models import Fingerprint, Sighting
from sqlalchemy import select
from sqlalchemy.orm import Session

from ja3svc.connections import normalize_ip
from ja3svc.dovecot import profiles_matching
from ja3svc.fingerprints import ClientFingerprints
from ja3svc.policy.facts import ConnectionPeer, CorrelatedFingerprints, FingerprintRef
from ja3svc.record import HelloRecord
from ja3svc.vocabulary import FINGERPRINT_FIELDS

__all__ = ["ConnectionFingerprints", "HelloTable", "find_client_hello", "fingerprint_refs"]

# First pause between polls, doubled up to the maximum: the first retries catch a batch being
# committed right now, later ones do not hammer the database.
POLL_FIRST_SECONDS = 0.025
POLL_MAX_SECONDS = 0.2
# Hard cap on polls whatever the wait (a clock jump must not make the loop spin).
POLL_MAX_ROUNDS = 64
# The in-memory table is re-read this often while a policy request waits for its hello (the
# capture thread usually lags by well under a millisecond; the pauses only matter in bursts).
MEMORY_POLL_FIRST_SECONDS = 0.002
MEMORY_POLL_MAX_SECONDS = 0.025
# A hello younger than this at lookup time may not be the connection's last: the capture's
# ring hands packets over in blocks retired every 50 ms (capture.live_source), so the second
# hello after a HelloRetryRequest can still be on its way (seen with NSS against OpenSSL 3.5,
# which asks for an X25519MLKEM768 key share NSS did not send). The lookup waits until the
# hello is this old (within its own deadline) and reads again.
SETTLE_SECONDS = 0.06
# Threads for the async database polls (see ConnectionFingerprints._db_executor).
DB_THREADS = 4
# Kinds a client hello can be matched by, in the order the policy should look them up.
CLIENT_KINDS = ("ja3", "ja3_dovecot", "ja3n", "ja4")

_S = Sighting


def _address_spellings(ip: str) -> list[str]:
    """Every text form under which the capture may have stored this peer address."""
    raw = ip.strip()
    forms = {raw, normalize_ip(raw)}
    try:
        addr = ipaddress.ip_address(normalize_ip(raw))
    except ValueError:
        return sorted(forms)
    if isinstance(addr, ipaddress.IPv4Address):
        forms.add(f"::ffff:{addr}")  # a capture of IPv4-mapped traffic (rare, but cheap)
    else:
        forms.add(addr.exploded)
    return sorted(forms)


def _query_once(
    session: Session, ips: list[str], port: int, since_ts: float
) -> HelloRecord | None:
    row = session.execute(
        select(_S)
        .where(_S.src.in_(ips), _S.sport == port, _S.hello == "client", _S.ts >= since_ts)
        # Latest first; on a tie (same batch, same packet time) the higher index is the later
        # hello. A HelloRetryRequest's second hello is later in time than the first anyway.
        .order_by(_S.ts.desc(), _S.hello_index.desc())
        .limit(1)
    ).scalar_one_or_none()
    if row is None:
        return None
    record: dict[str, Any] = {
        "ts": row.ts,
        "sensor": row.sensor,
        "src": row.src,
        "sport": row.sport,
        "dst": row.dst,
        "dport": row.dport,
        "transport": row.transport,
        "hello": row.hello,
        "index": row.hello_index,
        "sni": row.sni,
        "alpn": json.loads(row.alpn) if row.alpn else [],
        "tls_version": row.tls_version,
        "ja3_hash": row.ja3_hash,
        "ja3n_hash": row.ja3n_hash,
        "ja4": row.ja4,
        "ja3_dovecot_hash": row.ja3_dovecot_hash,
        "ja3_dovecot_hashes": _json_dict(row.ja3_dovecot_hashes),
    }
    # The sightings table keeps hashes only; the full strings live once per fingerprint.
    wanted = {
        (kind, record[value_key])
        for kind, (value_key, _) in FINGERPRINT_FIELDS.items()
        if kind != "ja3s" and record.get(value_key)
    }
    strings: dict[tuple[str, str], str | None] = {}
    if wanted:
        kinds = sorted({k for k, _ in wanted})
        values = sorted({v for _, v in wanted})
        for kind, value, full in session.execute(
            select(Fingerprint.kind, Fingerprint.value, Fingerprint.full_string).where(
                Fingerprint.kind.in_(kinds), Fingerprint.value.in_(values)
            )
        ):
            strings[(kind, value)] = full
    for kind, (value_key, string_key) in FINGERPRINT_FIELDS.items():
        if kind != "ja3s":
            record[string_key] = strings.get((kind, record.get(value_key) or ""))
    return HelloRecord.from_dict(record)


def _dovecot_hashes(record: HelloRecord) -> Mapping[str, str]:
    fp = record.fingerprints
    return fp.ja3_dovecot_hashes if isinstance(fp, ClientFingerprints) else {}


def _gives(record: HelloRecord | None, dovecot_hash: str) -> bool:
    """Whether ``record`` can be the hello Dovecot hashed into ``dovecot_hash`` ("": no hash
    to check against, as from Dovecot 2.3: any hello of the peer)."""
    if record is None:
        return False
    if not dovecot_hash:
        return True
    return bool(profiles_matching(dovecot_hash, dict(_dovecot_hashes(record))))


def _settle_seconds(hello_ts: float, now: float) -> float:
    """How long to wait before a later hello of the connection can be ruled out."""
    return max(0.0, min(SETTLE_SECONDS, SETTLE_SECONDS - (now - hello_ts)))


def _json_dict(text: str | None) -> dict[str, str]:
    if not text:
        return {}
    try:
        found = json.loads(text)
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}


async def find_client_hello(
    database: Database,
    ip: str,
    port: int,
    since_ts: float,
    wait_seconds: float = 0.0,
    executor: Executor | None = None,
    dovecot_hash: str = "",
) -> HelloRecord | None:
    """The client hello of the connection from ``ip:port`` seen at or after ``since_ts``.

    Polls until ``wait_seconds`` have passed (0: one query). Returns the latest hello of that
    peer (the highest index after a HelloRetryRequest), with its hashes and, where the database
    has them, the full fingerprint strings (else ""); None when nothing arrived in time. With
    ``dovecot_hash`` it keeps polling while the latest hello does not give that hash, and
    returns the last one read either way (the caller checks).

    Every poll runs in a fresh transaction (SQLite serves a snapshot per transaction, so that
    is what makes a batch committed meanwhile visible), in ``executor`` (default: the loop's),
    and the pauses between polls are ``asyncio.sleep``: the event loop is never blocked.
    """
    ips = _address_spellings(ip)
    port = int(port)
    loop = asyncio.get_running_loop()

    def query() -> HelloRecord | None:
        with database.session() as session:
            return _query_once(session, ips, port, since_ts)

    deadline = time.monotonic() + max(0.0, wait_seconds)
    pause = POLL_FIRST_SECONDS
    for _ in range(POLL_MAX_ROUNDS):
        found = await loop.run_in_executor(executor, query)
        remaining = deadline - time.monotonic()
        if _gives(found, dovecot_hash) or remaining <= 0:
            return found
        await asyncio.sleep(min(pause, remaining))
        pause = min(pause * 2, POLL_MAX_SECONDS)
    return None


def fingerprint_refs(record: HelloRecord | None) -> CorrelatedFingerprints:
    """The label-table keys of a client hello record, in lookup order (see CLIENT_KINDS), with
    Dovecot's hash under every OpenSSL profile (so either kind of Dovecot's labels and learned
    fingerprints match), and those hashes by profile for the profile detection."""
    if record is None or not isinstance(record.fingerprints, ClientFingerprints):
        return CorrelatedFingerprints(())
    fp = record.fingerprints
    refs: list[FingerprintRef] = []
    for kind in CLIENT_KINDS:
        value = getattr(fp, FINGERPRINT_FIELDS[kind][0], None)
        if value:
            refs.append(FingerprintRef(kind, str(value)))
    by_profile = dict(fp.ja3_dovecot_hashes)
    for value in by_profile.values():
        ref = FingerprintRef("ja3_dovecot", str(value))
        if value and ref not in refs:
            refs.append(ref)
    return CorrelatedFingerprints(refs, by_profile)


class HelloTable(Protocol):
    """What the lookup reads from an in-process capture: ``RecentConnections``, or the capture
    worker's ``SharedConnections`` (the same behind a lock)."""

    def get(self, ip: str, port: int, now: float) -> HelloRecord | None: ...


class ConnectionFingerprints:
    """Correlation for the policy service: memory first (in-process capture), then database.

    - ``await lookup(ip, port, now)`` -> the hello record or None, bounded by the waits, and
      without blocking the event loop (memory read inline, waits as ``asyncio.sleep``,
      database queries in a small executor);
    - ``await fingerprints_for_async(peer)``: the ``ja3svc.policy.ConnectionLookup`` protocol,
      so an instance can be passed to ``create_app(connection_lookup=...)`` directly.

    Waits: with ``recent`` (capture in this process) the memory table is waited on for up to
    ``wait_seconds`` and the database asked once afterwards; without it the database is polled
    for up to ``wait_seconds``. Both together stay bounded by about twice ``wait_seconds``
    plus one query, well inside Dovecot's 2 s.
    """

    def __init__(
        self,
        recent: HelloTable | None = None,
        database: Database | None = None,
        *,
        window_seconds: float = 300.0,
        wait_seconds: float = 0.5,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.recent = recent
        self.database = database
        self.window_seconds = window_seconds
        self.wait_seconds = wait_seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        # mismatches: a hello of the peer was found, but none that gives Dovecot's hash.
        self.stats = {
            "memory_hits": 0,
            "database_hits": 0,
            "mismatches": 0,
            "misses": 0,
            "database_errors": 0,
        }
        # The service's metrics hook (ja3svc_correlation_lookups_total), called with the key.
        self.on_count: Callable[[str], None] | None = None

    @classmethod
    def from_settings(
        cls, settings: Any, recent: HelloTable | None, database: Database | None
    ) -> ConnectionFingerprints:
        c = settings.capture
        return cls(
            recent,
            database,
            window_seconds=c.correlation_window_seconds,
            wait_seconds=c.correlation_wait_seconds,
        )

    def _count(self, key: str) -> None:
        with self._lock:
            self.stats[key] += 1
        if self.on_count is not None:
            self.on_count(key)

    async def lookup(
        self, ip: str, port: int, now: float | None = None, dovecot_hash: str = ""
    ) -> HelloRecord | None:
        """The last client hello from ``ip:port`` within the window before ``now``; with
        ``dovecot_hash``, preferably one that gives that hash (see the module's docstring): a
        hello that does not is returned only when no source has one that does.

        The loop is never blocked. The memory table is read inline (a dict lookup, under a short
        lock when shared with a capture thread) and, while the hello has not arrived, re-read
        after ``asyncio.sleep`` pauses rather than by parking a thread: a burst of requests for
        unseen connections must not use up the executor's threads. Database queries run in a
        small executor of their own (so they never queue behind other ``to_thread`` work),
        with the pauses between polls again on the loop.
        """
        now = self.clock() if now is None else now
        unmatched: HelloRecord | None = None
        if self.recent is not None:
            found = await self._wait_memory(ip, port, now, dovecot_hash)
            if _gives(found, dovecot_hash):
                self._count("memory_hits")
                return found
            unmatched = found
        if self.database is not None:
            wait = 0.0 if self.recent is not None else self.wait_seconds
            try:
                found = await find_client_hello(
                    self.database,
                    ip,
                    port,
                    now - self.window_seconds,
                    wait,
                    self._db_executor(),
                    dovecot_hash,
                )
            except Exception:
                # An unreachable database means "not seen"; the policy falls back to the hash.
                self._count("database_errors")
                found = None
            if _gives(found, dovecot_hash):
                self._count("database_hits")
                return found
            unmatched = unmatched or found
        self._count("mismatches" if unmatched is not None else "misses")
        return unmatched

    async def _wait_memory(
        self, ip: str, port: int, now: float, dovecot_hash: str
    ) -> HelloRecord | None:
        """The peer's last hello from the memory table, waited for up to ``wait_seconds``: one
        that gives ``dovecot_hash`` if that is known (else the last one read), or else one that
        no later hello of the connection can still replace (``SETTLE_SECONDS``)."""
        assert self.recent is not None
        deadline = time.monotonic() + max(0.0, self.wait_seconds)
        pause = MEMORY_POLL_FIRST_SECONDS
        while True:
            found = self.recent.get(ip, port, now)
            remaining = deadline - time.monotonic()
            if found is not None and dovecot_hash:
                if remaining <= 0 or _gives(found, dovecot_hash):
                    return found
            elif found is not None:
                settle = _settle_seconds(found.ts, self.clock())
                if settle > 0 and remaining > 0:
                    await asyncio.sleep(min(settle, remaining))
                    return self.recent.get(ip, port, now) or found
                return found
            if remaining <= 0:
                return None
            await asyncio.sleep(min(pause, remaining))
            pause = min(pause * 2, MEMORY_POLL_MAX_SECONDS)

    def _db_executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                # Few threads: PostgreSQL pools are small, and each query takes milliseconds.
                self._executor = ThreadPoolExecutor(
                    DB_THREADS, thread_name_prefix="ja3svc-correlation"
                )
            return self._executor

    def close(self) -> None:
        """Release the database executor (the service calls this at shutdown; idempotent)."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

    async def fingerprints_for_async(
        self, peer: ConnectionPeer, dovecot_hash: str = ""
    ) -> tuple[FingerprintRef, ...]:
        """The label-table keys of the peer's client hello (see ``lookup``); for a hello that
        does not give ``dovecot_hash``, none, but its ``dovecot_hashes`` (the service counts it)."""
        if not peer.ip or peer.port is None:
            return ()
        record = await self.lookup(peer.ip, peer.port, dovecot_hash=dovecot_hash)
        if record is not None and not _gives(record, dovecot_hash):
            return CorrelatedFingerprints((), _dovecot_hashes(record))
        return fingerprint_refs(record)
