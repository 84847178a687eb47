"""End to end: JA3 verdicts for Dovecot 2.3, which sends no hash, through connection correlation.

Two network namespaces joined by a veth (MTU 1500). The server namespace runs a real Dovecot 2.3
(IMAPS and IMAP+STARTTLS on high ports of the veth address) whose ``auth_policy_server_url``
points at ja3svc on 127.0.0.1 in that namespace, with ``conn/real_rip``/``conn/real_rport`` in
``auth_policy_request_attributes``. Real clients run in the client namespace: gnutls-cli
(``--port`` for IMAPS, ``--starttls-proto=imap`` for STARTTLS) and Python imaplib.

The JA3 to deny comes from an independent oracle: tshark on a tcpdump recording of the same
clients' handshakes, never from ja3svc. A deny label on gnutls-cli's JA3 must then make its IMAPS
and its STARTTLS logins fail with the configured message while imaplib still logs in, in both
deployments:

- ``in_process``: ``ja3svc serve --capture <veth> --user nobody`` (SQLite), correlation from
  the in-memory table of the capture inside the service;
- ``postgres``: a separate ``ja3svc capture`` process and ``ja3svc serve --correlate-db``
  sharing a PostgreSQL database of this module's own (dropped at the end).

Every wait is bounded; processes are killed and namespaces deleted in ``finally`` blocks
(``spawn`` and ``veth_pair``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from testbed.netns import (
    VethPair,
    netns_available,
    spawn,
    tcpdump,
    veth_pair,
    wait_for_listen,
)
from tests.support.api import ADMIN, API_KEY, http_in_namespace
from tests.support.database import fresh_pg_database
from tests.support.dovecot import (
    PY_CLIENT,
    TOOL_CLIENT,
    dovecot_conf,
    log_tails,
    prepare_dovecot_files,
    wait_for_text,
)
from tests.support.tshark import tcp_client_hellos

_NETNS_OK, _NETNS_WHY = netns_available()

pytestmark = [
    pytest.mark.dovecot,
    pytest.mark.timeout(600),
    pytest.mark.skipif(os.geteuid() != 0, reason="namespaces and Dovecot need root"),
    pytest.mark.skipif(not _NETNS_OK, reason=_NETNS_WHY or "no network namespaces"),
    *[
        pytest.mark.skipif(shutil.which(tool) is None, reason=f"{tool} is not installed")
        for tool in ("dovecot", "gnutls-cli", "tshark", "tcpdump")
    ],
]

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "secret"
# One account per client stack, so every decision row says which stack it was.
GNUTLS_USER, PYTHON_USER = "gina", "pete"
REJECT_MSG = "TLS client refused by ja3svc"
# High ports instead of 993/143: the capture filter is built from capture.ports, so the test
# also shows that setting at work.
IMAPS_PORT, IMAP_PORT, POLICY_PORT = 10993, 10143, 18642
CLIENT_TIMEOUT = 30.0

SERVICE_TOML = """\
[policy]
api_keys = ["{key}"]
admin_token = "{admin}"
reject_message = "{msg}"

[capture]
ports = [{imaps}, {imap}]
# Separate capture worker: commit sightings quickly, and let the service wait long enough
# for a batch (both well under Dovecot's 2 s policy timeout).
flush_interval_seconds = 0.2
correlation_wait_seconds = 1.0
metrics_log_seconds = 0
"""


@dataclass
class Stack:
    deployment: str
    net: VethPair
    workdir: Path
    logs: dict[str, Path] = field(default_factory=dict)

    def http(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        url = f"http://127.0.0.1:{POLICY_PORT}{path}"
        payload = json.dumps(body) if body is not None else ""
        return http_in_namespace(self.net.server, method, url, ADMIN, payload)

    def metrics(self) -> dict[str, float]:
        status, text = self.http("GET", "/metrics")
        assert status == 200, text
        values = {}
        for line in str(text).splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                values[name] = float(value)
        return values

    def log_tail(self) -> str:
        return log_tails(self.logs)


def imap_login(stack: Stack, client: str, mode: str, user: str) -> dict[str, Any]:
    """One IMAP login from the client namespace by imaplib (``python``) or gnutls-cli."""
    port = IMAPS_PORT if mode == "imaps" else IMAP_PORT
    # The shared clients name implicit TLS "tls" (they speak POP3 too).
    tls = {"imaps": "tls", "starttls": "starttls"}[mode]
    args = [tls, stack.net.server.ipv4, str(port), user, PASSWORD]
    if client == "python":
        argv = [sys.executable, "-c", PY_CLIENT, "imap", *args]
    else:
        argv = [sys.executable, "-c", TOOL_CLIENT, "gnutls", *args]
    res = stack.net.client.run(argv, timeout=CLIENT_TIMEOUT, check=False)
    assert res.returncode == 0, (client, mode, res.stdout, res.stderr, stack.log_tail())
    result: dict[str, Any] = json.loads(res.stdout.strip().splitlines()[-1])
    return result


@pytest.fixture(scope="module")
def net() -> Iterator[VethPair]:
    with veth_pair(mtu=1500, ipv6=None) as pair:
        yield pair


@pytest.fixture(scope="module")
def pg_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A migrated PostgreSQL database of this module's own, reachable from the namespaces."""
    from ja3svc.store.database import Database

    from tests.test_live_capture import namespace_reachable_pg_url

    admin = request.getfixturevalue("pg_admin_url")
    with fresh_pg_database(admin) as url:
        Database.from_url(url, upgrade=True).dispose()
        yield namespace_reachable_pg_url(url)


def _python(*args: str) -> list[str]:
    return [sys.executable, "-m", "ja3svc.cli.main", *args]


@pytest.fixture(scope="module", params=["in_process", "postgres"])
def stack(request: pytest.FixtureRequest, net: VethPair) -> Iterator[Stack]:
    deployment = request.param
    # Not pytest's tmp_path: nobody (the service after --user, Dovecot's imap processes) must
    # reach these files, and pytest's base directory is private to root.
    workdir = Path(tempfile.mkdtemp(prefix=f"ja3svc-corr-{deployment}-", dir="/tmp"))
    workdir.chmod(0o755)
    data = workdir / "data"
    data.mkdir()
    data.chmod(0o755)
    conf = workdir / "ja3svc.toml"
    conf.write_text(
        SERVICE_TOML.format(
            key=API_KEY, admin=ADMIN, msg=REJECT_MSG, imaps=IMAPS_PORT, imap=IMAP_PORT
        )
    )
    env = {**os.environ, "JA3SVC_DATA_DIR": str(data), "PYTHONPATH": str(ROOT)}
    env.pop("JA3SVC_DATABASE_URL", None)
    stack = Stack(deployment, net, workdir)
    serve_args = ["serve", "--port", str(POLICY_PORT), "--config", str(conf)]
    try:
        with contextlib.ExitStack() as procs:

            def start(name: str, argv: list[str]) -> subprocess.Popen[bytes]:
                log = procs.enter_context(open(workdir / f"{name}.log", "wb"))
                stack.logs[name] = workdir / f"{name}.log"
                # Killed on exit, also on failure; SIGTERM first, and time to take it: the
                # service and the capture flush and exit 0 on it.
                return procs.enter_context(
                    spawn(net.server, argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                          cwd=ROOT, stop_timeout=15)
                )  # fmt: skip

            if deployment == "in_process":
                start(
                    "serve",
                    _python(*serve_args, "--capture", net.server.ifname, "--user", "nobody"),
                )
            else:
                env["JA3SVC_DATABASE_URL"] = request.getfixturevalue("pg_url")
                capture = start(
                    "capture",
                    _python("capture", "--interface", net.server.ifname, "--config", str(conf),
                            "--sensor", "e2e-capture", "--user", "nobody"),
                )  # fmt: skip
                ready = wait_for_text(workdir / "capture.log", "capture started", 30)
                assert ready and capture.poll() is None, stack.log_tail()
                start("serve", _python(*serve_args, "--correlate-db"))
            wait_for_listen(net.server, POLICY_PORT, timeout=30)

            prepare_dovecot_files(workdir, (GNUTLS_USER, PYTHON_USER), PASSWORD)
            (workdir / "dovecot.conf").write_text(
                dovecot_conf(
                    workdir, POLICY_PORT, API_KEY, imap=IMAP_PORT, imaps=IMAPS_PORT,
                    listen=net.server.ipv4,
                )
            )  # fmt: skip
            stack.logs["dovecot"] = workdir / "dovecot.log"
            procs.enter_context(
                spawn(net.server, ["dovecot", "-F", "-c", str(workdir / "dovecot.conf")])
            )
            wait_for_listen(net.server, IMAPS_PORT, timeout=30)
            wait_for_listen(net.server, IMAP_PORT, timeout=30)
            yield stack
    finally:
        if not os.environ.get("JA3SVC_E2E_KEEP"):  # keep the logs when debugging
            shutil.rmtree(workdir, ignore_errors=True)


def tshark_client_ja3(pcap: Path) -> list[dict[str, Any]]:
    """The oracle: every ClientHello tshark finds, in frame order, with its JA3 hash.

    IMAPS is decoded as TLS on its port; on the IMAP port tshark's IMAP dissector follows the
    STARTTLS exchange (both directions are recorded) and hands the rest to TLS.
    """
    return tcp_client_hellos(pcap, (f"tcp.port=={IMAPS_PORT},tls", f"tcp.port=={IMAP_PORT},imap"))


CLIENTS = [("gnutls", "imaps"), ("gnutls", "starttls"), ("python", "imaps"), ("python", "starttls")]


def _user(client: str) -> str:
    return GNUTLS_USER if client == "gnutls" else PYTHON_USER


@pytest.fixture(scope="module")
def oracle(stack: Stack) -> dict[tuple[str, str], str]:
    """(client, mode) -> JA3 hash as tshark reports it for that client's hello.

    Recorded on the server's veth while each client logs in once, before any label exists (so
    every login is allowed here, which also checks the setup itself).
    """
    pcap = stack.workdir / "oracle.pcap"
    with tcpdump(stack.net.server, pcap, bpf=f"tcp port {IMAPS_PORT} or tcp port {IMAP_PORT}"):
        for client, mode in CLIENTS:
            got = imap_login(stack, client, mode, _user(client))
            assert got["ok"], (client, mode, got, stack.log_tail())
    hellos = tshark_client_ja3(pcap)
    # One hello per login, in the order the clients ran (no HelloRetryRequest with these
    # servers and clients; if there were one, the last hello of a connection is what counts).
    assert [h["dport"] for h in hellos] == [
        IMAPS_PORT if mode == "imaps" else IMAP_PORT for _, mode in CLIENTS
    ], hellos
    return {key: h["ja3"] for key, h in zip(CLIENTS, hellos, strict=True)}


@pytest.fixture(scope="module")
def gnutls_denied(stack: Stack, oracle: dict[tuple[str, str], str]) -> set[str]:
    """Deny labels on gnutls-cli's JA3 hash(es), created through the admin API."""
    denied = {oracle[("gnutls", "imaps")], oracle[("gnutls", "starttls")]}
    python = {oracle[("python", "imaps")], oracle[("python", "starttls")]}
    # Otherwise the test would prove nothing: the stacks must be told apart by JA3.
    assert not denied & python, oracle
    for value in sorted(denied):
        label = {"kind": "ja3", "value": value, "action": "deny", "client_name": "gnutls-cli"}
        status, body = stack.http("POST", "/api/v1/labels", label)
        assert status == 201, body
    return denied


@pytest.mark.parametrize("mode", ["imaps", "starttls"])
def test_denied_client_stack_gets_the_message(stack: Stack, gnutls_denied: set[str], mode: str):
    got = imap_login(stack, "gnutls", mode, GNUTLS_USER)
    assert not got["ok"], (got, stack.log_tail())
    assert f"NO [ALERT] {REJECT_MSG}" in got["text"], (got, stack.log_tail())
    status, rows = stack.http("GET", f"/api/v1/decisions?username={GNUTLS_USER}&limit=50")
    assert status == 200, rows
    deny = [r for r in rows if r["command"] == "allow/before" and r["rule"] == "label_deny"]
    assert deny and deny[0]["status"] == -1, rows


@pytest.mark.parametrize("mode", ["imaps", "starttls"])
def test_other_client_stack_logs_in(stack: Stack, gnutls_denied: set[str], mode: str):
    got = imap_login(stack, "python", mode, PYTHON_USER)
    assert got["ok"], (got, stack.log_tail())
    status, rows = stack.http("GET", f"/api/v1/decisions?username={PYTHON_USER}&limit=50")
    assert status == 200, rows
    mine = [r for r in rows if r["remote_port"] == got["sport"] and r["command"] == "allow/before"]
    # The verdict had the connection's fingerprints (not the no-fingerprint rule): the
    # correlation found imaplib's hello too, and no label matched it.
    assert mine and mine[0]["status"] == 0 and mine[0]["rule"] != "no_fingerprint", rows


LOOKUPS = "ja3svc_correlation_lookups_total"


def test_verdicts_came_from_the_expected_correlation_path(stack: Stack, gnutls_denied: set[str]):
    metrics = stack.metrics()
    if stack.deployment == "in_process":
        assert metrics.get(f"{LOOKUPS}{{result=\"memory_hits\"}}", 0) >= 4, metrics
        assert metrics.get("ja3svc_capture_hellos_total", 0) >= 8, metrics
        assert metrics.get("ja3svc_capture_kernel_drops_total", -1) == 0, metrics
    else:
        assert metrics.get(f"{LOOKUPS}{{result=\"database_hits\"}}", 0) >= 4, metrics
    assert metrics.get(f"{LOOKUPS}{{result=\"database_errors\"}}", -1) == 0, metrics


def test_the_fingerprint_store_matches_the_oracle(
    stack: Stack, oracle: dict[tuple[str, str], str], gnutls_denied: set[str]
):
    # The label's fingerprint is known to the store with the very hash tshark computed: the
    # capture (in the service or separate) stored gnutls-cli's hello.
    value = oracle[("gnutls", "imaps")]
    status, body = stack.http("GET", f"/api/v1/fingerprints/ja3/{value}")
    assert status == 200, body
    assert any(lab["action"] == "deny" for lab in body.get("labels", [])), body


def test_no_tracebacks_in_the_service_logs(stack: Stack, gnutls_denied: set[str]):
    for name in ("serve", "capture"):
        path = stack.logs.get(name)
        if path is not None:
            assert "Traceback" not in path.read_text(errors="replace"), stack.log_tail()
