"""Live capture against real TLS stacks, checked against tshark on the same traffic.

Two network namespaces joined by a veth (MTU 1500, offloads off, so big hellos really span
segments); openssl s_server in the server namespace; the live source captures on the veth end in
the client namespace, while tcpdump records the same veth for tshark, the independent oracle.
Clients: openssl s_client with several option sets (incl. a HelloRetryRequest), Python's ssl
(which prints its source port, for correlation) and curl_cffi impersonating Chrome and Firefox
(post-quantum key shares: ClientHellos of 1.7-2 KB over two segments).

The shared capture session runs twice: on the TPACKET_V3 ring (the normal path) and with
``ring=False`` (the recv fallback), with the same clients and the same tshark comparison.

Needs root and `ip netns`; skipped otherwise, with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from ja3svc.capture import live_source
from ja3svc.capture.live_engine import LiveEngine, NativeLiveEngine, PythonLiveEngine
from ja3svc.capture.live_source import LiveSource, default_filter
from ja3svc.capture.pcap_run import native_module
from ja3svc.capture.worker import CaptureWorker
from ja3svc.store.correlation import ConnectionFingerprints, find_client_hello
from ja3svc.store.sighting_writer import WriterStats

from ja3svc.connections import RecentConnections
from ja3svc.dovecot import DEFAULT_PROFILE
from ja3svc.engine import FingerprintEngine
from ja3svc.record import HelloRecord
from testbed.netns import (
    VethPair,
    netns_available,
    spawn,
    tcpdump,
    veth_pair,
    wait_for_listen,
)
from tests.support.tshark import tcp_client_hellos

_AVAILABLE, _REASON = netns_available() if sys.platform == "linux" else (False, "Linux only")

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(not _AVAILABLE, reason=_REASON),
    pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed"),
    pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed"),
]

CLONE_NEWNET = 0x40000000
CLIENT_TIMEOUT = 20.0
HTTPS, HRR_PORT = 443, 993  # s_server on 993 only accepts P-384: X25519-first clients get an HRR

# Python ssl client: prints its source port first, so the test knows the connection's key.
PY_CLIENT = """
import socket, ssl, sys
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
raw = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
print(raw.getsockname()[1], flush=True)
with ctx.wrap_socket(raw, server_hostname="imap.ja3svc.test") as tls:
    tls.sendall(b"a LOGOUT\\r\\n")
"""

PY_CURL_CFFI = """
import sys
from curl_cffi import requests
requests.get(sys.argv[1], impersonate=sys.argv[2], verify=False, timeout=10)
"""

# 5000 datagrams as fast as Python sends them: far more than a 4 KB socket buffer holds.
UDP_FLOOD = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(5000):
    s.sendto(b"x" * 512, (sys.argv[1], 9))
"""

OPENSSL_OPTION_SETS: list[tuple[int, list[str]]] = [
    (HTTPS, []),
    (HTTPS, ["-tls1_2"]),
    (HTTPS, ["-alpn", "imap,h2", "-servername", "mail.ja3svc.test"]),
    (HTTPS, ["-noservername", "-tls1_3", "-ciphersuites", "TLS_AES_256_GCM_SHA384"]),
    (HTTPS, ["-no_ticket", "-sigalgs", "ECDSA+SHA256:RSA-PSS+SHA256"]),
    (HRR_PORT, ["-groups", "X25519:P-384"]),
]


# --- helpers ----------------------------------------------------------------------------------


def open_source_in(netns: str, interfaces: list[str], **kwargs: Any) -> LiveSource:
    """Open a LiveSource inside a network namespace from this process.

    The network namespace is per thread: a helper thread enters it and opens the sockets, which
    stay bound to that namespace's interfaces whichever thread reads them afterwards.
    """
    result: dict[str, Any] = {}

    def enter_and_open() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns")
            result["source"] = LiveSource(interfaces, **kwargs)
        except BaseException as exc:
            result["error"] = exc
        finally:
            os.close(fd)

    thread = threading.Thread(target=enter_and_open)
    thread.start()
    thread.join(30)
    if "error" in result:
        raise result["error"]
    return result["source"]


class ListWriter:
    """Stands in for SightingWriter: keeps the records and counts the timed flushes."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.flushes = 0
        self.closed = False
        self.stats = WriterStats()
        self.lock = threading.Lock()

    def add(self, record: HelloRecord) -> None:
        with self.lock:
            self.records.append(record.as_dict())  # serialised as the real writer does

    def flush(self) -> None:
        self.flushes += 1

    def close(self) -> WriterStats:
        self.closed = True
        return self.stats


def tshark_client_hellos(pcap: Path) -> list[dict[str, Any]]:
    """Every ClientHello tshark finds: source port, JA3 string and TCP segments, frame order."""
    return tcp_client_hellos(pcap, (f"tcp.port=={HRR_PORT},tls",))


def wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("tls")
    key, crt = d / "key.pem", d / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", str(key), "-out", str(crt), "-subj", "/CN=server.ja3svc.test",
         "-days", "2"],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    # Readable by anyone: the servers may run while a capture process is unprivileged.
    d.chmod(0o755)
    return crt, key


@pytest.fixture(scope="module")
def lab(cert: tuple[Path, Path]) -> Iterator[VethPair]:
    crt, key = cert
    with veth_pair(mtu=1500, ipv6=None) as net:
        base = ["openssl", "s_server", "-cert", str(crt), "-key", str(key), "-www", "-quiet"]
        with (
            spawn(net.server, [*base, "-accept", str(HTTPS)]),
            spawn(net.server, [*base, "-accept", str(HRR_PORT), "-groups", "P-384"]),
        ):
            wait_for_listen(net.server, HTTPS)
            wait_for_listen(net.server, HRR_PORT)
            yield net


def run_client(net: VethPair, argv: list[str]) -> subprocess.CompletedProcess[str]:
    # Exit status is not the point (s_client vs -www, HTTP/2 expectations): the hello is.
    res = net.client.run(argv, timeout=CLIENT_TIMEOUT, check=False)
    time.sleep(0.05)
    return res


def python_client(net: VethPair, port: int) -> int:
    res = run_client(net, [sys.executable, "-c", PY_CLIENT, net.server.ipv4, str(port)])
    return int(res.stdout.split()[0])


# --- one capture session shared by the tests below --------------------------------------------


@dataclass
class Session:
    mode: str  # "ring" or "recv": how the source read the interface
    net: VethPair
    worker: CaptureWorker
    writer: ListWriter
    oracle: list[dict[str, Any]]
    python_ports: dict[int, int] = field(default_factory=dict)  # server port -> client port
    metrics: dict[str, Any] = field(default_factory=dict)
    stop_seconds: float = 0.0


def _engine(name: str) -> LiveEngine:
    if name == "native":
        assert native_module() is not None, "ja3svc._native is not built: pip install -e ."
        return NativeLiveEngine(DEFAULT_PROFILE, 200_000, 300.0)
    return PythonLiveEngine(FingerprintEngine(dovecot_profile=DEFAULT_PROFILE))


# How the interface is read x which engine: the Rust engine takes whole ring blocks (or recv
# batches) in one call each, the Python reference one packet at a time.
@pytest.fixture(
    scope="module",
    params=[("ring", "native"), ("recv", "native"), ("ring", "python"), ("recv", "python")],
    ids=lambda p: "-".join(p),
)
def session(
    request: pytest.FixtureRequest, lab: VethPair, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Session]:
    mode, engine_name = request.param
    pcap = tmp_path_factory.mktemp("live") / "oracle.pcap"
    net = lab
    source = open_source_in(
        net.client.netns,
        [net.client.ifname],
        bpf_filter=default_filter([HTTPS, HRR_PORT]),
        ring=mode == "ring",
    )
    # The comparison below must really exercise the path it is named after.
    assert source.modes[net.client.ifname].split()[0] == mode, source.modes
    writer = ListWriter()
    worker = CaptureWorker(
        source,
        writer=writer,
        recent=RecentConnections(1000, 300),
        engine=_engine(engine_name),
        flush_interval=0.2,
    )
    ports: dict[int, int] = {}
    worker.start()
    try:
        with tcpdump(net.client, pcap):
            url = f"https://{net.server.ipv4}/"
            for port, options in OPENSSL_OPTION_SETS:
                run_client(
                    net,
                    ["openssl", "s_client", "-connect", f"{net.server.ipv4}:{port}", *options],
                )
            ports[HTTPS] = python_client(net, HTTPS)
            ports[HRR_PORT] = python_client(net, HRR_PORT)
            for target in ("chrome", "chrome", "firefox"):
                run_client(net, [sys.executable, "-c", PY_CURL_CFFI, url, target])
        oracle = tshark_client_hellos(pcap)
        # The worker hands records to the writer thread within the flush interval.
        wait_until(lambda: len(writer.records) >= len(oracle), 10.0)
        metrics = worker.metrics()
    finally:
        started = time.monotonic()
        worker.stop(timeout=15)
        stop_seconds = time.monotonic() - started
    yield Session(mode, net, worker, writer, oracle, ports, metrics, stop_seconds)


def test_every_client_hello_tshark_sees_with_the_same_ja3(session: Session):
    assert len(session.oracle) >= len(OPENSSL_OPTION_SETS) + 5
    live = [r for r in session.writer.records if r["hello"] == "client"]
    # Per connection (client port), the hellos in order, compared as full JA3 strings.
    ours: dict[int, list[str]] = defaultdict(list)
    for r in sorted(live, key=lambda r: (r["sport"], r["index"])):
        ours[r["sport"]].append(r["ja3"])
    theirs: dict[int, list[str]] = defaultdict(list)
    for r in session.oracle:
        theirs[r["sport"]].append(r["ja3_full"])
    assert ours == theirs
    assert Counter(r["ja3"] for r in live) == Counter(r["ja3_full"] for r in session.oracle)


def test_multi_segment_hellos_were_captured(session: Session):
    spanning = [r for r in session.oracle if r["segments"] >= 2]
    assert spanning, "curl_cffi's browser hellos should span two segments at MTU 1500"
    ours = {(r["sport"], r["ja3"]) for r in session.writer.records}
    assert all((r["sport"], r["ja3_full"]) in ours for r in spanning)


def test_hello_retry_request_gives_two_hellos(session: Session):
    hrr = [r for r in session.oracle if r["dport"] == HRR_PORT]
    by_port = Counter(r["sport"] for r in hrr)
    assert by_port and all(n == 2 for n in by_port.values())


def test_correlation_by_peer_returns_the_last_hello(session: Session):
    lookup = ConnectionFingerprints(session.worker.recent, None, wait_seconds=0.5)
    client_ip = session.net.client.ipv4
    for server_port, client_port in session.python_ports.items():
        expected = [r["ja3_full"] for r in session.oracle if r["sport"] == client_port]
        record = asyncio.run(lookup.lookup(client_ip, client_port, time.time()))
        assert record is not None, f"no hello for {client_ip}:{client_port}"
        found = record.as_dict()
        # After a HelloRetryRequest Dovecot keeps the LAST hello: so must we.
        assert found["index"] == len(expected)
        assert found["ja3"] == expected[-1]
        assert found["dport"] == server_port
        for key in ("ja3_hash", "ja3n", "ja4", "ja3_dovecot_hash"):
            assert found[key]
    assert asyncio.run(lookup.lookup(client_ip, 1, time.time())) is None


def test_metrics_and_kernel_counters(session: Session):
    m = session.metrics
    assert m["packets"] > 0 and m["bytes"] > 0
    assert m["kernel_packets"] >= m["packets"]
    assert m["kernel_drops"] == 0
    assert m["userspace_drops"] == 0 and m["engine_errors"] == 0
    assert m["hellos"] == len(session.oracle)
    assert m["ring_interfaces"] == (1 if session.mode == "ring" else 0)
    assert m["kernel_ring_freezes"] == 0
    assert m["recent_connections"] == len({r["sport"] for r in session.oracle})
    json.dumps(m)  # plain numbers, ready for /metrics and JSON logs
    assert session.writer.flushes >= 1 and session.writer.closed


def test_stop_is_prompt(session: Session):
    # stop() wakes the poll loop through its pipe; the last flush is part of it.
    assert session.stop_seconds < 5.0


@pytest.mark.parametrize("ring", [True, False], ids=["ring", "recv"])
def test_kernel_drops_are_counted(lab: VethPair, ring: bool):
    # A buffer far too small and nobody reading: the kernel must drop, and say so. The smallest
    # ring (two blocks of 128 KiB) holds a few hundred of the 5000 datagrams.
    source = open_source_in(
        lab.client.netns,
        [lab.client.ifname],
        bpf_filter="udp",
        receive_buffer_bytes=4096,
        ring=ring,
    )
    try:
        lab.client.run([sys.executable, "-c", UDP_FLOOD, lab.server.ipv4], timeout=60)
        (stats,) = source.read_kernel_stats()
        assert stats.mode == ("ring" if ring else "recv")
        assert stats.kernel_drops > 0
        assert stats.kernel_packets >= stats.kernel_drops
        # Only a TPACKET_V3 ring reports how often the kernel found every block taken.
        assert (stats.kernel_freezes > 0) == ring
    finally:
        source.close()


def _read_in_thread(source: LiveSource) -> tuple[threading.Thread, list[Any]]:
    got: list[Any] = []
    thread = threading.Thread(target=lambda: got.extend(source.packets()), daemon=True)
    thread.start()
    return thread, got


@pytest.mark.parametrize("ring", [True, False], ids=["ring", "recv"])
def test_stop_is_prompt_when_idle(lab: VethPair, ring: bool):
    # Nothing matches the filter, so packets() sits in poll(): stop() must end it through the
    # wake-up pipe, not after the block timeout or a poll timeout. The join bound only keeps a
    # broken stop() from hanging the suite.
    source = open_source_in(
        lab.client.netns, [lab.client.ifname], bpf_filter="udp port 7", ring=ring
    )
    try:
        thread, got = _read_in_thread(source)
        time.sleep(0.3)  # let the loop reach poll()
        started = time.monotonic()
        source.stop()
        thread.join(5)
        elapsed = time.monotonic() - started
        assert not thread.is_alive(), f"packets() still running {elapsed:.3f}s after stop()"
        assert got == []
    finally:
        source.close()


def test_ring_refused_falls_back_to_recv(
    lab: VethPair, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    def refuse(*_args: object) -> None:
        raise live_source._RingUnavailable(12, "Cannot allocate memory")

    monkeypatch.setattr(live_source, "_setup_ring", refuse)
    caplog.set_level("WARNING", logger="ja3svc.capture")
    source = open_source_in(lab.client.netns, [lab.client.ifname], bpf_filter="udp")
    try:
        assert source.modes == {lab.client.ifname: "recv"}
        assert any("packet ring unavailable" in r.getMessage() for r in caplog.records)
        thread, got = _read_in_thread(source)
        lab.client.run([sys.executable, "-c", UDP_FLOOD, lab.server.ipv4], timeout=60)
        assert wait_until(lambda: len(got) >= 100, 10)
        source.stop()
        thread.join(5)
        (stats,) = source.read_kernel_stats()
        assert stats.mode == "recv" and stats.packets == len(got)
    finally:
        source.close()


def test_several_interfaces_each_with_a_ring(lab: VethPair):
    # One ring per socket, all read by one loop: the veth and the namespace's loopback.
    ifaces = [lab.client.ifname, "lo"]
    source = open_source_in(lab.client.netns, ifaces, bpf_filter="udp")
    try:
        assert [m.split()[0] for m in source.modes.values()] == ["ring", "ring"]
        thread, got = _read_in_thread(source)
        sent_from = time.time()
        lab.client.run([sys.executable, "-c", UDP_FLOOD, lab.server.ipv4], timeout=60)
        lab.client.run([sys.executable, "-c", UDP_FLOOD, "127.0.0.1"], timeout=60)
        assert wait_until(lambda: all(s.packets >= 5000 for s in source.read_kernel_stats()), 10), (
            source.read_kernel_stats()
        )
        source.stop()
        thread.join(5)
        by_name = {s.interface: s for s in source.read_kernel_stats()}
        assert sum(s.packets for s in by_name.values()) == len(got)
        for s in by_name.values():
            assert s.mode == "ring" and s.linktype == 1
            assert s.kernel_packets >= s.packets and s.kernel_drops == 0
        # Every datagram intact: a UDP payload of 512 bytes after Ethernet, IPv4 and UDP.
        assert {(len(frame), wire) for _ts, _lt, frame, wire in got} == {(554, 554)}
        # Kernel timestamps (tp_sec, tp_nsec) on the same clock as time.time().
        assert all(sent_from - 1 <= ts <= time.time() for ts, *_ in got)
    finally:
        source.close()


# --- the command: privilege drop, database, signals, errors ------------------------------------


@dataclass
class CommandRun:
    proc: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)  # its stderr, as it comes
    returncode: int | None = None


@contextlib.contextmanager
def capture_command(lab: VethPair, argv: list[str], data_dir: Path) -> Iterator[CommandRun]:
    """``argv`` (a ``ja3svc capture``) in the client namespace with ``data_dir`` as its data
    directory, past its "capture started" line. On exit SIGTERM, on which the command flushes
    and exits 0; its exit status is kept in ``returncode``."""
    env = {**os.environ, "JA3SVC_DATA_DIR": str(data_dir)}
    proc = lab.client.popen(
        argv, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env
    )
    run = CommandRun(proc)
    reader = threading.Thread(target=lambda: run.lines.extend(proc.stderr), daemon=True)
    reader.start()
    try:
        assert wait_until(lambda: any("capture started" in x for x in run.lines), 30), run.lines
        yield run
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        run.returncode = proc.wait(timeout=20)
        reader.join(5)


@pytest.mark.postgres
def test_capture_command_as_nobody_stores_into_postgresql(
    lab: VethPair, pg_migrated_url: str, tmp_path: Path
):
    from ja3svc.store.database import Database
    from sqlalchemy import text

    url = namespace_reachable_pg_url(pg_migrated_url)
    db = Database.from_url(url)
    with db.engine.begin() as conn:
        conn.execute(text("TRUNCATE sightings, fingerprints RESTART IDENTITY"))
    argv = [
        "ja3svc", "capture", "--interface", lab.client.ifname, "--user", "nobody",
        "--sensor", "netns-test", "--database-url", url,
    ]  # fmt: skip
    # The spool (used during database outages) must be writable by nobody: a directory of its
    # own under a world-traversable parent, as systemd's StateDirectory= would give.
    data_dir = Path(tempfile.mkdtemp(prefix="ja3svc-live-", dir="/tmp"))
    data_dir.chmod(0o755)
    try:
        with capture_command(lab, argv, data_dir) as run:
            status = Path(f"/proc/{run.proc.pid}/status").read_text()
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            assert fields["Uid"].split() == ["65534"] * 4
            assert fields["Gid"].split() == ["65534"] * 4
            assert int(fields["CapEff"], 16) == 0 and int(fields["CapPrm"], 16) == 0
            assert fields["NoNewPrivs"].strip() == "1"

            since = time.time() - 1
            port = python_client(lab, HTTPS)
            # The worker flushes every second: the policy's bounded wait finds it.
            found_hello = find_client_hello(db, lab.client.ipv4, port, since, wait_seconds=5)
            record = asyncio.run(found_hello)
            assert record is not None, (port, run.lines)
            found = record.as_dict()
            assert (found["sport"], found["dport"], found["sensor"]) == (port, HTTPS, "netns-test")
            assert found["ja3"] and found["ja3_hash"]
    finally:
        db.dispose()
        shutil.rmtree(data_dir, ignore_errors=True)
    lines = run.lines
    assert run.returncode == 0, lines
    # The ring is set up before the privilege drop, so nobody still reads through it.
    started = [json.loads(x) for x in lines if "capture started" in x]
    assert started[0]["modes"][lab.client.ifname].startswith("ring"), started
    stopped = [json.loads(x) for x in lines if "capture stopped" in x]
    assert stopped and stopped[0]["sightings_stored"] >= 1 and stopped[0]["kernel_drops"] == 0
    assert stopped[0]["ring_interfaces"] == 1
    assert not any("Traceback" in x for x in lines)


def test_capture_command_starts_while_the_database_is_down_and_spools(lab: VethPair):
    """PostgreSQL unreachable at start (nothing listens on the URL's port): the capture starts
    anyway, says so, and every hello it sees goes to the spool, to be replayed later."""
    data_dir = Path(tempfile.mkdtemp(prefix="ja3svc-down-", dir="/tmp"))
    # Inside the client's namespace 127.0.0.1 is its own loopback, where nothing listens.
    url = "postgresql+psycopg://postgres@127.0.0.1:5999/ja3svc_down"
    argv = ["ja3svc", "capture", "--interface", lab.client.ifname, "--sensor", "down-test",
            "--database-url", url]  # fmt: skip
    try:
        with capture_command(lab, argv, data_dir) as run:
            lines = run.lines
            assert any("database unreachable at start" in x for x in lines), lines
            port = python_client(lab, HTTPS)
            spooled: list[dict[str, Any]] = []

            def found() -> bool:
                spooled.clear()
                for f in data_dir.rglob("*.jsonl"):
                    spooled.extend(json.loads(x)["record"] for x in f.read_text().splitlines() if x)
                return any(r.get("sport") == port for r in spooled)

            assert wait_until(found, 20), (port, spooled[:3], lines)
            record = next(r for r in spooled if r.get("sport") == port)
            assert record["dport"] == HTTPS and record["ja3_hash"]
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    assert run.returncode == 0, lines
    assert not any("Traceback" in x for x in lines)


def namespace_reachable_pg_url(url: str) -> str:
    """The same database through PostgreSQL's Unix socket: 127.0.0.1 inside the client
    namespace is that namespace's own loopback, but the filesystem (and the socket) is shared."""
    from sqlalchemy.engine import make_url

    u = make_url(url)
    directory = "/var/run/postgresql"
    if u.host not in ("127.0.0.1", "localhost") or not os.path.exists(
        f"{directory}/.s.PGSQL.{u.port or 5432}"
    ):
        pytest.skip("PostgreSQL has no Unix socket reachable from inside a network namespace")
    return u.set(host=None).update_query_dict({"host": directory}).render_as_string(False)


def _ja3svc(argv: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False, **kw)


def test_missing_interface_is_one_line_and_exit_1():
    res = _ja3svc(["ja3svc", "capture", "--interface", "nonexistent0"])
    assert res.returncode == 1
    assert res.stderr.strip() == "ja3svc capture: no such interface: nonexistent0"


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) not installed")
def test_missing_privilege_is_one_line_and_exit_1():
    # Root without CAP_NET_RAW in its bounding set: exactly "no privilege to capture".
    res = _ja3svc(
        ["setpriv", "--bounding-set", "-net_raw", "--inh-caps", "-net_raw",
         "ja3svc", "capture", "--interface", "lo"]
    )  # fmt: skip
    assert res.returncode == 1
    assert "needs root or CAP_NET_RAW" in res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
