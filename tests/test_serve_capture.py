"""`ja3svc serve --capture/--correlate-db` pieces without namespaces: the async correlation
(``fingerprints_for_async``), ``create_app``'s background components and extra metrics, and the
command's argument errors. The end-to-end runs with Dovecot are in test_correlation_e2e.py.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from ja3svc.api.app import create_app
from ja3svc.api.metrics import CallbackGauges
from ja3svc.store.correlation import ConnectionFingerprints
from ja3svc.store.sighting_writer import SightingWriter

from ja3svc.connections import RecentConnections
from ja3svc.policy import ConnectionPeer
from ja3svc.record import HelloRecord
from tests.support.api import AppClient, make_settings

ROOT = Path(__file__).resolve().parents[1]


def _store(db: Any, records: list[dict[str, Any]], tmp_path: Path) -> None:
    with SightingWriter(db, sensor="test", spool_dir=tmp_path / "spool") as writer:
        for r in records:
            writer.add(HelloRecord.from_dict(r))


class Ticker:
    """Counts event-loop turns while a coroutine waits: proof the loop was not blocked."""

    def __init__(self) -> None:
        self.ticks = 0

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.ticks += 1
            await asyncio.sleep(0.005)


async def _with_ticker(coro: Any) -> tuple[Any, int, float]:
    stop = asyncio.Event()
    ticker = Ticker()
    task = asyncio.create_task(ticker.run(stop))
    started = time.monotonic()
    try:
        result = await coro
    finally:
        stop.set()
        await task
    return result, ticker.ticks, time.monotonic() - started


# --- fingerprints_for_async ---------------------------------------------------------------------


def test_async_memory_lookup_gives_the_same_refs_every_time(make_record):
    record = make_record(3, client=3)
    recent = RecentConnections(window_seconds=10**10)
    recent.put(HelloRecord.from_dict(record))
    lookup = ConnectionFingerprints(recent, None, window_seconds=10**10, wait_seconds=0)
    peer = ConnectionPeer(record["src"], record["sport"])
    first = asyncio.run(lookup.fingerprints_for_async(peer))
    assert first and asyncio.run(lookup.fingerprints_for_async(peer)) == first
    assert asyncio.run(lookup.fingerprints_for_async(ConnectionPeer(record["src"], None))) == ()
    assert lookup.stats["memory_hits"] == 2


def test_async_lookup_keeps_the_last_hello_after_hello_retry_request(make_record):
    first = make_record(4, client=1)
    second = {**make_record(4, client=2), "ts": first["ts"] + 0.01, "index": 2}
    recent = RecentConnections(window_seconds=10**10)
    recent.put(HelloRecord.from_dict(first))
    recent.put(HelloRecord.from_dict(second))
    lookup = ConnectionFingerprints(recent, None, window_seconds=10**10, wait_seconds=0)
    refs = asyncio.run(lookup.fingerprints_for_async(ConnectionPeer(first["src"], first["sport"])))
    assert refs[0].value == second["ja3_hash"] != first["ja3_hash"]


def test_async_memory_wait_sees_a_late_hello_without_blocking_the_loop(make_record):
    record = make_record(5, client=5)
    recent = RecentConnections(window_seconds=10**10)
    lookup = ConnectionFingerprints(recent, None, window_seconds=10**10, wait_seconds=2.0)
    timer = threading.Timer(0.2, recent.put, args=(HelloRecord.from_dict(record),))
    timer.start()
    try:
        found, ticks, took = asyncio.run(
            _with_ticker(lookup.lookup(record["src"], record["sport"], record["ts"] + 1))
        )
    finally:
        timer.join(5)
    assert found is not None and found.fingerprints.ja3_hash == record["ja3_hash"]
    assert 0.15 <= took < 1.5  # found by a poll, not at the deadline
    assert ticks >= 10  # the loop kept running while the request waited


def test_async_miss_is_bounded_and_counted():
    lookup = ConnectionFingerprints(RecentConnections(), None, wait_seconds=0.2)
    found, ticks, took = asyncio.run(_with_ticker(lookup.lookup("198.51.100.9", 4242)))
    assert found is None and 0.15 <= took < 1.5 and ticks >= 10
    assert lookup.stats["misses"] == 1


def test_async_database_lookup_waits_for_a_late_batch(database, make_record, tmp_path):
    record = make_record(6, client=6)
    lookup = ConnectionFingerprints(None, database, window_seconds=10**10, wait_seconds=3.0)
    timer = threading.Timer(0.3, _store, args=(database, [record], tmp_path))
    timer.start()
    try:
        peer = ConnectionPeer(record["src"], record["sport"])
        refs, ticks, took = asyncio.run(_with_ticker(lookup.fingerprints_for_async(peer)))
    finally:
        timer.join(10)
        lookup.close()
    again = lookup.fingerprints_for_async(ConnectionPeer(record["src"], record["sport"]))
    assert refs == asyncio.run(again)
    assert refs[0].value == record["ja3_hash"]
    assert took < 2.5 and ticks >= 10
    assert lookup.stats["database_hits"] == 2


def test_async_unreachable_database_is_a_miss():
    from ja3svc.store.database import Database

    db = Database.from_url("postgresql+psycopg://postgres@127.0.0.1:1/none", upgrade=False)
    lookup = ConnectionFingerprints(None, db, wait_seconds=0)
    try:
        assert asyncio.run(lookup.lookup("198.51.100.7", 50000)) is None
        assert lookup.stats["database_errors"] == 1
    finally:
        lookup.close()
        db.dispose()


# --- create_app: background components and extra metrics ----------------------------------------


class FakeWorker:
    def __init__(self) -> None:
        self.events: list[str] = []

    def start(self) -> None:
        self.events.append("start")

    def stop(self) -> None:
        self.events.append("stop")

    def metrics(self) -> dict[str, float]:
        return {"packets": 12, "kernel_drops": 0, "Bad-Name": 1, "uptime_seconds": 1.5}


def test_background_runs_for_the_app_lifetime_and_metrics_are_exported(tmp_path):
    worker = FakeWorker()
    lookup = ConnectionFingerprints(RecentConnections(), None, wait_seconds=0)
    app = create_app(
        make_settings(tmp_path),
        connection_lookup=lookup,
        background=[worker],
        extra_metrics={"ja3svc_capture": worker.metrics},
    )
    assert worker.events == []
    with AppClient(app) as client:
        assert worker.events == ["start"]
        text = client.get("/metrics").text
    assert worker.events == ["start", "stop"]
    # Running counts are counters (`_total`), the rest gauges.
    assert "# TYPE ja3svc_capture_packets_total counter" in text
    assert "ja3svc_capture_packets_total 12.0" in text
    assert "# TYPE ja3svc_capture_uptime_seconds gauge" in text
    assert "ja3svc_capture_uptime_seconds 1.5" in text
    assert "Bad-Name" not in text  # not a metric name: skipped, never rendered
    assert 'ja3svc_correlation_lookups_total{result="misses"} 0.0' in text


def test_callback_gauges_are_bounded_and_survive_a_failing_callback():
    values = {f"n{i}": i for i in range(10)}
    gauges = CallbackGauges("x", "help", lambda: values, max_names=3)
    rendered = [line for line in gauges.render() if not line.startswith("#")]
    assert rendered == ["x_n0_total 0.0", "x_n1_total 1.0", "x_n2_total 2.0"]
    values["a_new_one"] = 5  # past the cap: never exported
    assert not any("a_new_one" in line for line in gauges.render())

    def broken() -> dict[str, float]:
        raise RuntimeError("worker gone")

    assert CallbackGauges("y", "help", broken).render() == []


def test_correlate_database_setting_plugs_in_the_database_lookup(tmp_path):
    settings = make_settings(tmp_path)
    settings = settings.model_copy(
        update={"serve": settings.serve.model_copy(update={"correlate_database": True})}
    )
    app = create_app(settings)
    lookup = app.state.service.lookup
    assert isinstance(lookup, ConnectionFingerprints)
    assert lookup.recent is None and lookup.database is app.state.database
    assert lookup.wait_seconds == settings.capture.correlation_wait_seconds
    # Everyone else keeps the default: no correlation.
    assert not isinstance(create_app(make_settings(tmp_path)).state.service.lookup, type(lookup))


# --- the command's argument errors --------------------------------------------------------------


def _serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ja3svc.cli.main", "serve", *args],
        capture_output=True, text=True, timeout=60, check=False, cwd=ROOT,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--capture", "lo", "--workers", "2"], "--capture needs --workers 1"),
        (["--user", "nobody"], "only apply with --capture"),
        (["--capture-filter", "tcp"], "only apply with --capture"),
        (["--capture", "nonexistent0"], "no such interface: nonexistent0"),
    ],
)
def test_bad_capture_arguments_are_one_line_and_exit_1(args: list[str], message: str):
    res = _serve(*args)
    assert res.returncode == 1, res
    assert message in res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_worker_listening_sockets_have_tcp_nodelay_and_reuse_port():
    # asyncio sets TCP_NODELAY only on sockets it creates; without it answers waited ~40 ms for
    # the client's delayed ACK. Accepted connections inherit the option from these sockets.
    import pickle
    import socket

    from ja3svc.cli.worker_sockets import WorkerListener, listen_socket

    from testbed.processes import free_port

    port = free_port()
    shared = listen_socket("127.0.0.1", 0, reuse_port=False)
    # What uvicorn's supervisor pickles into a worker becomes a socket the worker binds itself.
    first = pickle.loads(pickle.dumps(WorkerListener("127.0.0.1", port)))
    second = pickle.loads(pickle.dumps(WorkerListener("127.0.0.1", port)))
    try:
        for sock in (shared, first, second):
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        for sock in (first, second):
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
            assert sock.getsockname() == ("127.0.0.1", port)
    finally:
        for sock in (shared, first, second):
            sock.close()


def _start_serve(tmp_path: Path, port: int, *args: str) -> subprocess.Popen[bytes]:
    """A real `ja3svc serve` on ``port`` with a fresh SQLite file and the test API key."""
    import os

    from tests.support.api import API_KEY

    conf = tmp_path / "serve.toml"
    conf.write_text(
        f'database_url = "sqlite:///{tmp_path / "s.sqlite3"}"\n[policy]\napi_keys = ["{API_KEY}"]\n'
    )
    env = {**os.environ, "JA3SVC_DATA_DIR": str(tmp_path)}
    return subprocess.Popen(
        [sys.executable, "-m", "ja3svc.cli.main", "serve",
         "--port", str(port), "--config", str(conf), "--log-level", "warning", *args],
        cwd=ROOT, env=env,
    )  # fmt: skip


def test_serve_workers_on_a_taken_port_fail_at_once(tmp_path):
    """Another program listening on the port (without SO_REUSEPORT): the parent's own bind
    says so in one line and exits, instead of workers failing and being restarted."""
    import socket

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    conf = tmp_path / "serve.toml"
    conf.write_text(f'database_url = "sqlite:///{tmp_path / "s.sqlite3"}"\n')
    try:
        res = _serve("--port", str(port), "--workers", "2", "--config", str(conf))
    finally:
        taken.close()
    assert res.returncode == 3, res
    assert f"cannot listen on 127.0.0.1:{port}" in res.stderr
    assert "Traceback" not in res.stderr


def _worker_of_each_connection(port: int) -> dict[int, int]:
    """pid -> established connections to ``port`` it holds (server side), read with ss."""
    out = subprocess.run(
        ["ss", "-Htnp", "state", "established", f"( sport = :{port} )"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    counts: dict[int, int] = {}
    for pid in re.findall(r"pid=(\d+)", out):
        counts[int(pid)] = counts.get(int(pid), 0) + 1
    return counts


def test_serve_workers_share_the_connections(tmp_path):
    """`ja3svc serve --workers 2`: a burst of keep-alive connections (Dovecot opens its pool at
    once) is spread over both workers by the kernel, each worker answering on its own socket.
    With one shared socket, the first worker to wake used to take most of a burst."""
    import http.client
    import json

    from testbed.processes import free_port, stop, wait_port
    from tests.support.api import API_KEY, allow_24

    port = free_port()
    proc = _start_serve(tmp_path, port, "--workers", "2")
    conns: list[http.client.HTTPConnection] = []
    try:
        wait_port(port, proc)
        deadline = time.monotonic() + 30  # both workers listening
        while time.monotonic() < deadline:
            listening = subprocess.run(
                ["ss", "-Hltnp", f"( sport = :{port} )"], capture_output=True, text=True
            ).stdout  # fmt: skip
            if len({int(p) for p in re.findall(r"pid=(\d+)", listening)} - {proc.pid}) == 2:
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"two workers never listened: {listening}")
        headers = {"X-API-Key": API_KEY, "Content-Type": "application/json"}
        for _ in range(64):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.connect()
            conns.append(conn)
        for conn in conns:
            conn.request("POST", "/policy?command=allow", body=allow_24(), headers=headers)
            res = conn.getresponse()
            assert res.status == 200 and json.loads(res.read()) == {"status": 0}
        counts = _worker_of_each_connection(port)
        assert sum(counts.values()) == 64 and len(counts) == 2, counts
        # 64 connections hashed over two sockets: fewer than 12 on one has odds below 1e-6.
        assert min(counts.values()) >= 12, counts
    finally:
        for conn in conns:
            conn.close()
        stop(proc)


@pytest.mark.parametrize("impl", ["httptools", "h11"])
def test_serve_answers_dovecot_with_either_http_implementation(tmp_path, impl):
    """`ja3svc serve --http` picks uvicorn's parser; both take Dovecot's URL forms, including
    the `??command=` a configured URL ending in `?` becomes, and its keep-alive requests."""
    import http.client
    import json

    from testbed.processes import free_port, stop, wait_port
    from tests.support.api import API_KEY, allow_24

    port = free_port()
    proc = _start_serve(tmp_path, port, "--http", impl)
    try:
        wait_port(port, proc)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        headers = {"X-API-Key": API_KEY, "Content-Type": "application/json"}
        for url in ("/policy??command=allow", "/policy?command=allow", "/command/allow"):
            conn.request("POST", url, body=allow_24(), headers=headers)  # one connection
            res = conn.getresponse()
            assert res.status == 200 and json.loads(res.read()) == {"status": 0}, url
        conn.request("POST", "/policy?command=bogus", body=allow_24(), headers=headers)
        res = conn.getresponse()
        assert res.status == 400 and "unknown command" in json.loads(res.read())["reason"]
        conn.close()
    finally:
        stop(proc)
