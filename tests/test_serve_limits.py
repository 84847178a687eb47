"""Limits of a real `ja3svc serve` (uvicorn, loopback): body size, idle and slow-header
connections, the connection cap under 20,000 idle sockets, and the refusal to run open."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

from testbed.processes import free_port, stop
from tests.support.api import API_KEY, allow_24
from tests.support.cli import serve_process

ROOT = Path(__file__).resolve().parent.parent


def _serve(tmp_path: Path, serve_toml: str = "", *args: str, keys: bool = True):
    conf = tmp_path / "serve.toml"
    policy = f'[policy]\napi_keys = ["{API_KEY}"]\nadmin_token = "adm"\n' if keys else ""
    conf.write_text(
        f'database_url = "sqlite:///{tmp_path / "s.sqlite3"}"\n{policy}[serve]\n{serve_toml}\n'
    )
    return serve_process(tmp_path, conf, *args)


def _request(port: int, body: bytes, path: str = "/policy?command=allow") -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"X-API-Key: {API_KEY}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head + body


def _read_response(sock: socket.socket, timeout: float = 5.0) -> bytes:
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return head + b"\r\n\r\n" + rest


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _closed_within(sock: socket.socket, seconds: float) -> float | None:
    """Seconds until the server closed ``sock`` (recv gives b"" or a reset), None if it did not."""
    start = time.monotonic()
    sock.settimeout(seconds)
    try:
        while True:
            if not sock.recv(4096):
                return time.monotonic() - start
    except TimeoutError:
        return None
    except ConnectionResetError:
        return time.monotonic() - start


def test_a_100_mb_body_is_refused_before_it_is_read(tmp_path):
    proc, port, log = _serve(tmp_path)
    try:
        rss_before = _rss_kib(proc.pid)
        with socket.create_connection(("127.0.0.1", port)) as s:
            head = _request(port, b"")
            head = head.replace(b"Content-Length: 0", b"Content-Length: 104857600")
            s.sendall(head + b"{" * 65536)  # the first 64 KiB of a 100 MB body
            started = time.monotonic()
            answer = _read_response(s)
            elapsed = time.monotonic() - started
            assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
            assert b"larger than 1048576 bytes" in answer
            # Refused, and the connection closed: the rest of the body is never read.
            assert _closed_within(s, 5.0) is not None
        assert elapsed < 1.0
        # Five more, in parallel, as in the report that took the process to 938 MB.
        socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(5)]
        for s in socks:
            s.sendall(head + b"{" * 65536)
        for s in socks:
            assert _read_response(s).startswith(b"HTTP/1.1 413")
            s.close()
        assert _rss_kib(proc.pid) - rss_before < 50_000
        # A chunked body (no length up front) is counted while read and refused too.
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(
                b"POST /api/v1/labels HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"X-Admin-Token: adm\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            chunk = b"{" * 65536
            try:
                for _ in range(40):  # 2.5 MiB, over the 1 MiB limit
                    s.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
            except OSError:
                pass  # closed by the server mid-way: refused
            answer = _read_response(s)
            assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        # And a normal request still works.
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(_request(port, allow_24().encode()))
            assert _read_response(s).endswith(b'{"status":0}')
    finally:
        stop(proc)
    assert "Traceback" not in log.read_text()


def test_idle_and_slow_header_connections_are_closed(tmp_path):
    proc, port, log = _serve(tmp_path, "idle_timeout_seconds = 2.0\nheader_timeout_seconds = 1.0")
    try:
        idle = socket.create_connection(("127.0.0.1", port))
        slow = socket.create_connection(("127.0.0.1", port))
        slow.sendall(b"POST /policy?command=allow HTTP/1.1\r\n")
        busy = socket.create_connection(("127.0.0.1", port))
        # The slow client keeps trickling header bytes; the header timeout still ends it.
        started = time.monotonic()
        slow_closed = None
        while time.monotonic() - started < 6:
            try:
                slow.sendall(b"X")
            except OSError:
                slow_closed = time.monotonic() - started
                break
            if _closed_within(slow, 0.3) is not None:
                slow_closed = time.monotonic() - started
                break
        assert slow_closed is not None and slow_closed < 3.5, slow_closed
        # A keep-alive client that keeps asking is never cut.
        for _ in range(4):
            busy.sendall(_request(port, allow_24().encode()))
            assert _read_response(busy).endswith(b'{"status":0}')
            time.sleep(0.5)
        idle_closed = _closed_within(idle, 2.0)
        assert idle_closed is not None
        metrics = _get(port, "/metrics").decode()
        assert _metric(metrics, "ja3svc_http_idle_timeouts_total") >= 1
        assert _metric(metrics, "ja3svc_http_header_timeouts_total") >= 1
        busy.close()
    finally:
        stop(proc)
    assert "Traceback" not in log.read_text()


def _get(port: int, path: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        return _read_response(s).partition(b"\r\n\r\n")[2]


def _metric(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


# An attacker process: opens N connections without sending a byte, says so, holds them until
# its standard input closes. Two of them hold 20,000 (one process may have 20,000 descriptors).
_ATTACKER = """
import socket, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
socks = []
deadline = time.monotonic() + 60
for _ in range(n):
    s = socket.socket()
    s.setblocking(False)
    s.connect_ex(("127.0.0.1", port))
    socks.append(s)
    if time.monotonic() > deadline:
        break
print(len(socks), flush=True)
sys.stdin.read()
"""


def test_20000_idle_connections_do_not_keep_a_request_from_an_answer(tmp_path):
    """An attacker's 20,000 idle sockets against a cap of 4,000 connections: the oldest idle
    ones give way, the service never runs out of descriptors (no EMFILE traceback), and a
    legitimate request on a new connection is answered within 100 ms."""
    proc, port, log = _serve(tmp_path, "max_connections = 4000")
    attackers = [
        subprocess.Popen(
            [sys.executable, "-c", _ATTACKER, str(port), "10000"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        opened = [int(a.stdout.readline() or 0) for a in attackers]  # type: ignore[union-attr]
        assert opened == [10_000, 10_000]
        time.sleep(2.0)  # let the server's accept loop work through the queue
        latencies = []
        for _ in range(5):
            started = time.monotonic()
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(_request(port, allow_24().encode()))
                answer = _read_response(s)
            latencies.append(time.monotonic() - started)
            assert answer.endswith(b'{"status":0}'), answer[:200]
        assert min(latencies) < 0.1, latencies
        metrics = _get(port, "/metrics").decode()
        assert _metric(metrics, "ja3svc_http_connections_evicted_total") > 0
        assert _metric(metrics, "ja3svc_http_connections_open") <= 4000
    finally:
        for a in attackers:
            a.communicate(timeout=30)
        stop(proc)
    text = log.read_text()
    assert "Too many open files" not in text and "Traceback" not in text


def test_the_policy_endpoint_does_not_start_open_on_a_public_address(tmp_path):
    conf = tmp_path / "open.toml"
    conf.write_text(f'database_url = "sqlite:///{tmp_path / "o.sqlite3"}"\n')
    res = subprocess.run(
        [sys.executable, "-m", "ja3svc.cli.main", "serve", "--host", "0.0.0.0",
         "--port", str(free_port()), "--config", str(conf)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert res.returncode != 0
    assert "without a credential" in res.stderr and "--allow-open" in res.stderr
    assert "Traceback" not in res.stderr
    # Told explicitly, it starts (and answers without a key); on loopback it starts anyway.
    for args in (("--host", "0.0.0.0", "--allow-open"), ()):
        proc, port, _log = _serve(tmp_path, "", *args, keys=False)
        try:
            with socket.create_connection(("127.0.0.1", port)) as s:
                s.sendall(_request(port, allow_24().encode()).replace(API_KEY.encode(), b"x"))
                assert _read_response(s).endswith(b'{"status":0}')
        finally:
            stop(proc)


def test_docs_and_metrics_can_be_switched_off(tmp_path):
    proc, port, _log = _serve(tmp_path, "docs = false\nmetrics = false")
    try:
        for path in ("/docs", "/openapi.json", "/metrics"):
            with socket.create_connection(("127.0.0.1", port)) as s:
                s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                assert _read_response(s).startswith(b"HTTP/1.1 404"), path
        assert json.loads(_get(port, "/livez")) == {"status": "ok"}
    finally:
        stop(proc)


def test_overload_answers_allow_at_once_by_fail_open_and_counts(tmp_path):
    """More allows in flight than serve.max_inflight: the next is answered at once with what
    Dovecot does on a policy failure by default (continue: status 0), and counted."""
    from ja3svc.api import limits
    from ja3svc.api.app import create_app

    from tests.support.api import DOVECOT_HEADERS, AppClient, make_settings

    headers = {**DOVECOT_HEADERS, "X-API-Key": API_KEY}
    with AppClient(create_app(make_settings(tmp_path))) as client:
        service = client.app.policy_service
        before = limits.COUNTERS["policy_overload_total"]
        service.inflight = service.max_inflight  # as if that many allows were being judged
        r = client.post("/policy?command=allow", content=allow_24(), headers=headers)
        assert r.status_code == 200 and r.json() == {"status": 0}
        assert limits.COUNTERS["policy_overload_total"] == before + 1
        service.settings = service.settings.model_copy(update={"fail_open": False})
        r = client.post("/policy?command=allow", content=allow_24(), headers=headers)
        assert r.json()["status"] == -1 and r.json()["msg"]
        service.inflight = 0
        r = client.post("/policy?command=allow", content=allow_24(), headers=headers)
        assert r.json() == {"status": 0} and service.inflight == 0
