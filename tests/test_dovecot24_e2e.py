"""End to end with Dovecot 2.4 as Debian 13 ships it: Dovecot 2.4.1 on OpenSSL 3.5.9.

Two network namespaces joined by a veth. The server namespace runs Debian 13's Dovecot 2.4.1
(chroot into the cached trixie root, tests/support/trixie.py) configured with the README's 2.4
dovecot.conf snippet exactly as written there (policy service on 127.0.0.1:8642, its API key,
``attrs/ja3 = %{ssl_ja3_hash}`` and the TCP peer), and a real ``ja3svc serve`` on the host's
Python in the same namespace, in two deployments: Dovecot's hash alone (``hash_only``) and
``serve --capture <veth>`` (``capture``). Clients log in from the client namespace: curl,
Python 3.13 imaplib, gnutls-cli 3.8, NSS tstclnt and Java 21 from the root, and Chrome's TLS
stack (GREASE, permuted extensions) through curl_cffi on the host.

Expected Dovecot hashes come from Dovecot's own login log (``%{ssl_ja3}``, ``%{ssl_ja3_hash}``),
the wire JA3 from tshark; never from ja3svc. Every process is killed and every namespace and
directory removed in ``finally`` blocks; every wait is bounded.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from testbed.netns import VethPair, netns_available, spawn, tcpdump, veth_pair, wait_for_listen
from tests.support import trixie
from tests.support.api import ADMIN, http_in_namespace
from tests.support.dovecot import log_tails, wait_for_text
from tests.support.tshark import tcp_client_hellos

_NETNS_OK, _NETNS_WHY = netns_available()

pytestmark = [
    pytest.mark.dovecot,
    pytest.mark.timeout(900),
    pytest.mark.skipif(os.geteuid() != 0, reason="chroot, namespaces and Dovecot need root"),
    pytest.mark.skipif(not _NETNS_OK, reason=_NETNS_WHY or "no network namespaces"),
]

REPO = Path(__file__).resolve().parents[1]
# What the README's snippet says, which this test uses as written.
README_PORT, README_KEY = 8642, "long-random-secret"
REJECT_MSG = "Refused by ja3svc e2e policy"
TARPIT = 3
USERS = [f"u{i:03d}" for i in range(120)] + ["learner", "chromey"]

SERVICE_TOML = """\
[policy]
api_keys = ["{key}"]
admin_token = "{admin}"
reject_message = "{msg}"
# Per-user learning at its strictest: an established account's new fingerprint is refused,
# so a randomising client that were taken for "new" would be seen at once.
new_fingerprint_action = "reject"
user_min_successes = 3
label_cache_seconds = 1.0

[capture]
ports = [{imaps}, {imap}, {pop3s}, {pop3}]
metrics_log_seconds = 0
"""


@dataclass
class Stack:
    deployment: str
    net: VethPair
    wd: trixie.RootWorkdir
    logs: dict[str, Path] = field(default_factory=dict)
    users: Iterator[str] = field(default_factory=lambda: iter(USERS[:-2]))

    @property
    def dovecot_log(self) -> Path:
        return self.wd.host / "dovecot.log"

    def http(self, method: str, path: str, body: Any = None, token: str = ADMIN) -> Any:
        url = f"http://127.0.0.1:{README_PORT}{path}"
        payload = body if isinstance(body, str) else (json.dumps(body) if body else "")
        status, answer = http_in_namespace(self.net.server, method, url, token, payload)
        assert status < 300, (method, path, status, answer)
        return answer

    def label(self, **fields: Any) -> None:
        self.http("POST", "/api/v1/labels", {"source": "manual", "confidence": 100, **fields})

    def login(
        self, client: str, user: str, proto: str = "imap", mode: str = "tls",
        port: int | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        port = port or trixie.PORTS[(proto, mode)]
        argv = trixie.client_argv(self.wd, sys.executable, client, proto, mode,
                                  self.net.server.ipv4, port, user)  # fmt: skip
        started = time.monotonic()
        res = self.net.client.run(argv, timeout=120, check=False)
        out = trixie.parse_client_output(client, res)
        out["seconds"] = time.monotonic() - started
        return out

    def decisions(self, user: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self.http(
            "GET", f"/api/v1/decisions?username={user}&limit=100"
        )
        return rows

    def log_tail(self) -> str:
        return log_tails({**self.logs, "dovecot": self.dovecot_log})


@pytest.fixture(scope="module")
def root() -> Path:
    return trixie.trixie_root()  # builds it if missing; fails loudly if it cannot


@pytest.fixture(scope="module")
def net() -> Iterator[VethPair]:
    with veth_pair(mtu=1500, ipv6=None) as pair:
        yield pair


@pytest.fixture(scope="module", params=["hash_only", "capture"])
def stack(request: pytest.FixtureRequest, root: Path, net: VethPair) -> Iterator[Stack]:
    deployment = request.param
    keep = bool(os.environ.get("JA3SVC_E2E_KEEP"))
    with trixie.root_workdir(root, f"ja3svc-e2e24-{deployment}-", keep) as wd:
        data = wd.host / "data"
        data.mkdir()
        data.chmod(0o777)
        conf = wd.host / "ja3svc.toml"
        conf.write_text(SERVICE_TOML.format(
            key=README_KEY, admin=ADMIN, msg=REJECT_MSG, imaps=trixie.IMAPS, imap=trixie.IMAP,
            pop3s=trixie.POP3S, pop3=trixie.POP3,
        ))  # fmt: skip
        trixie.prepare_files(wd, USERS)
        snippet = trixie.readme_dovecot24_snippet()
        assert f":{README_PORT}/" in snippet and README_KEY in snippet, snippet
        (wd.host / "dovecot.conf").write_text(
            trixie.dovecot24_conf(wd.inner, net.server.ipv4, net.client.ipv4, snippet)
        )
        env = {**os.environ, "JA3SVC_DATA_DIR": str(data), "PYTHONPATH": str(REPO)}
        env.pop("JA3SVC_DATABASE_URL", None)
        stack = Stack(deployment, net, wd)
        serve = [sys.executable, "-m", "ja3svc.cli.main", "serve", "--port", str(README_PORT),
                 "--config", str(conf)]  # fmt: skip
        if deployment == "capture":
            serve += ["--capture", net.server.ifname, "--user", "nobody"]
        with contextlib.ExitStack() as procs:
            log = procs.enter_context(open(wd.host / "serve.log", "wb"))
            stack.logs["serve"] = wd.host / "serve.log"
            # SIGTERM, and time to take it: the service flushes and exits 0 on it.
            procs.enter_context(spawn(net.server, serve, stdout=log, stderr=subprocess.STDOUT,
                                      env=env, cwd=REPO, stop_timeout=15))  # fmt: skip
            wait_for_listen(net.server, README_PORT, timeout=30)
            if deployment == "capture":
                started = wait_for_text(wd.host / "serve.log", "capture in the policy service", 30)
                assert started, stack.log_tail()
            dovecot = trixie.in_root(root, ["dovecot", "-F", "-c", f"{wd.inner}/dovecot.conf"])
            procs.enter_context(
                spawn(net.server, dovecot, stderr=open(wd.host / "dovecot.err", "wb"))
            )
            for port in (trixie.IMAPS, trixie.IMAP, trixie.POP3S, trixie.POP3):
                wait_for_listen(net.server, port, timeout=30)
            yield stack


def _logged(
    stack: Stack, user: str, count: int = 1, log: Path | None = None
) -> list[dict[str, Any]]:
    rows = trixie.wait_login_lines(log or stack.dovecot_log, user, count)
    assert len(rows) >= count, (user, rows, stack.log_tail())
    return rows


# The second Dovecot's ports (same server address as the first).
O30_PORTS = {"imap": 1143, "imaps": 1993, "pop3": 1110, "pop3s": 1995}


@contextlib.contextmanager
def _dovecot_on_openssl30(stack: Stack) -> Iterator[Path]:
    """A second Debian 13 Dovecot 2.4.1, same README snippet (so the same ja3svc serve), running
    on Debian 12's OpenSSL 3.0 (trixie.host_openssl30); yields its login log."""
    wd = stack.wd
    o30 = wd.host / "o30"
    (o30 / "home").mkdir(parents=True)
    (o30 / "home").chmod(0o777)
    for name in ("cert.pem", "key.pem", "passwd"):
        shutil.copy2(wd.host / name, o30 / name)
    lib = trixie.host_openssl30(wd)
    (o30 / "dovecot.conf").write_text(trixie.dovecot24_conf(
        f"{wd.inner}/o30", stack.net.server.ipv4, stack.net.client.ipv4,
        trixie.readme_dovecot24_snippet(), ports=O30_PORTS, openssl_lib=lib,
    ))  # fmt: skip
    argv = trixie.in_root(wd.root, ["env", f"LD_LIBRARY_PATH={lib}", "dovecot", "-F", "-c",
                                    f"{wd.inner}/o30/dovecot.conf"])  # fmt: skip
    with spawn(stack.net.server, argv, stderr=open(o30 / "dovecot.err", "wb")):
        wait_for_listen(stack.net.server, O30_PORTS["imaps"], timeout=30)
        yield o30 / "dovecot.log"


# Every client family, with the connections it makes in the first round.
FIRST_ROUND = [
    ("curl", "imap", "tls"), ("curl", "imap", "starttls"), ("curl", "pop3", "tls"),
    ("python", "imap", "tls"), ("python", "imap", "starttls"), ("python", "pop3", "starttls"),
    ("gnutls", "imap", "tls"), ("gnutls", "imap", "starttls"),
    ("nss", "imap", "tls"), ("java", "imap", "tls"), ("chrome", "imap", "tls"),
]  # fmt: skip


@pytest.fixture(scope="module")
def first_round(stack: Stack) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Each client logs in once, before any label (all allowed); Dovecot's log line of each."""
    seen = {}
    for key in FIRST_ROUND:
        user = next(stack.users)
        got = stack.login(key[0], user, key[1], key[2])
        assert got["ok"], (key, got, stack.log_tail())
        seen[key] = {**_logged(stack, user)[0], "login": user}
    return seen


def test_every_client_logs_in_and_the_service_gets_dovecots_hash(stack: Stack, first_round):
    for key, row in first_round.items():
        rows = [d for d in stack.decisions(row["login"]) if d["command"] == "allow/before"]
        assert rows, (key, stack.log_tail())
        # attrs/ja3 from the README's snippet carries exactly what Dovecot logged.
        assert rows[-1]["ja3_hash"] == row["ja3_hash"], (key, rows, row)
        assert rows[-1]["remote_port"] == row["rport"], (key, rows, row)
        assert rows[-1]["status"] == 0


def test_deny_tarpit_and_allow_by_label_on_dovecots_hash(stack: Stack, first_round):
    curl = first_round[("curl", "imap", "tls")]["ja3_hash"]
    python = first_round[("python", "imap", "tls")]["ja3_hash"]
    java = first_round[("java", "imap", "tls")]["ja3_hash"]
    assert len({curl, python, java}) == 3, first_round
    stack.label(kind="ja3_dovecot", value=curl, action="deny", client_name="curl")
    stack.label(kind="ja3_dovecot", value=python, action="tarpit", tarpit_seconds=TARPIT)
    # An allow label is an allow-list entry: it overrides another source's tarpit.
    stack.label(kind="ja3_dovecot", value=java, action="tarpit", source="list")
    stack.label(kind="ja3_dovecot", value=java, action="allow", client_name="java")
    time.sleep(1.2)  # label_cache_seconds

    user = next(stack.users)
    got = stack.login("curl", user)
    assert not got["ok"] and f"[ALERT] {REJECT_MSG}" in got["text"], (got, stack.log_tail())
    assert _logged(stack, user)[0]["ja3_hash"] == curl
    assert any(d["rule"] == "label_deny" for d in stack.decisions(user))

    fast_user, slow_user = next(stack.users), next(stack.users)
    fast = stack.login("java", fast_user)
    slow = stack.login("python", slow_user)
    assert fast["ok"] and slow["ok"], (fast, slow, stack.log_tail())
    assert _logged(stack, slow_user)[0]["ja3_hash"] == python
    assert slow["seconds"] >= TARPIT - 0.2, slow
    tarpitted = [d for d in stack.decisions(slow_user) if d["command"] == "allow/before"]
    assert tarpitted and tarpitted[0]["status"] == TARPIT, tarpitted
    # (Java's own start-up takes seconds on a busy machine: the verdict, not a timing, shows
    # that its login was not delayed.)
    before = [d for d in stack.decisions(fast_user) if d["command"] == "allow/before"]
    assert before and before[0]["rule"] == "label_allow" and before[0]["status"] == 0, before


def test_randomising_client_is_not_refused_by_per_user_learning(stack: Stack, first_round):
    """gnutls-cli 3.8 (mutt, neomutt, Evolution) permutes its extensions: ten logins, ten
    Dovecot hashes, and learning on at its strictest must neither tarpit nor reject them."""
    started = time.monotonic()
    for i in range(10):
        got = stack.login("gnutls", "learner")
        assert got["ok"] and got["seconds"] < TARPIT, (i, got, stack.log_tail())
    hashes = [r["ja3_hash"] for r in _logged(stack, "learner", 10)]
    assert len(set(hashes)) >= 8, hashes  # the oracle: the client really randomises
    rows = [d for d in stack.decisions("learner") if d["command"] == "allow/before"]
    assert len(rows) == 10 and all(d["status"] == 0 for d in rows), rows
    rules = {d["rule"] for d in rows}
    if stack.deployment == "hash_only":
        assert "randomising_client" in rules, rows
    else:  # the capture's JA4 is stable: the account knows it after the first login
        assert "default" in rules or "randomising_client" not in rules, rows
    assert "new_fingerprint_for_user" not in rules, rows
    assert time.monotonic() - started < 120


@pytest.mark.parametrize("stack", ["capture"], indirect=True)
def test_a_ja4_label_from_a_capture_applies_to_every_login_of_chrome(
    stack: Stack, first_round, tmp_path
):
    """Chrome's Dovecot hash never repeats (GREASE cipher, permuted extensions); with the
    capture, one JA4 label made from a recording of it covers all of its logins."""
    pcap = tmp_path / "chrome.pcap"
    with tcpdump(stack.net.server, pcap, bpf=f"tcp port {trixie.IMAPS}"):
        assert stack.login("chrome", next(stack.users))["ok"]
    records = _pcap_records(pcap)
    assert len(records) == 1, records
    stack.label(kind="ja4", value=records[0]["ja4"], action="deny", client_name="Chrome")
    time.sleep(1.2)
    for i in range(10):
        got = stack.login("chrome", "chromey")
        assert not got["ok"] and REJECT_MSG in got["text"], (i, got, stack.log_tail())
    hashes = [r["ja3_hash"] for r in _logged(stack, "chromey", 10)]
    assert len(set(hashes)) == 10, hashes  # Dovecot's hash alone could match none of them
    rows = [d for d in stack.decisions("chromey") if d["command"] == "allow/before"]
    assert len(rows) == 10 and all(d["rule"] == "label_deny" for d in rows), rows
    # Other clients still log in.
    assert stack.login("nss", next(stack.users))["ok"]


def _pcap_records(pcap: Path, *extra: str) -> list[dict[str, Any]]:
    res = subprocess.run(
        [sys.executable, "-m", "ja3svc.cli.main", "pcap", "-q", "--no-progress", *extra,
         str(pcap)],
        capture_output=True, text=True, timeout=60, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    return [r for r in map(json.loads, res.stdout.splitlines()) if r["hello"] == "client"]


@pytest.mark.parametrize("stack", ["hash_only"], indirect=True)
def test_a_label_from_a_capture_applies_on_openssl_30_and_35(stack: Stack, first_round, tmp_path):
    """A capture is stored, its hello labelled by the wire JA3 (from tshark); the label then
    applies to logins through two real Dovecot 2.4.1 with the README's snippet and one service:
    Debian 13's on OpenSSL 3.5 and the same Dovecot on Debian 12's OpenSSL 3.0, whose hash for
    the same client differs (its OpenSSL does not report extension 27)."""
    pcap = tmp_path / "python.pcap"
    user = next(stack.users)
    with tcpdump(stack.net.server, pcap, bpf=f"tcp port {trixie.IMAPS}"):
        assert stack.login("python", user)["ok"]
    h35 = _logged(stack, user)[0]
    wire = tcp_client_hellos(pcap, (f"tcp.port=={trixie.IMAPS},tls",))
    assert len(wire) == 1, wire
    data = stack.wd.host / "data"
    res = subprocess.run(
        [sys.executable, "-m", "ja3svc.cli.main", "pcap", "-q", "--no-progress", "--store",
         str(pcap)],
        capture_output=True, text=True, timeout=60, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), "JA3SVC_DATA_DIR": str(data)},
    )  # fmt: skip
    assert res.returncode == 0, res.stderr

    with _dovecot_on_openssl30(stack) as o30_log:
        # Before the label both let the client in, each logging its own hash (the oracle).
        first = next(stack.users)
        assert stack.login("python", first, port=O30_PORTS["imaps"])["ok"], stack.log_tail()
        h30 = _logged(stack, first, log=o30_log)[0]
        exts35, exts30 = (r["ja3"].split(",")[2].split("-") for r in (h35, h30))
        # Which OpenSSL each Dovecot runs on, as its own log shows: only 3.2+ reports 27.
        assert "27" in exts35 and "27" not in exts30, (h35, h30)
        assert h30["ja3_hash"] != h35["ja3_hash"], (h35, h30)
        # Only the stored hello's index ties the 3.0 Dovecot's hash to the wire JA3.
        assert wire[0]["ja3"] != h30["ja3_hash"], (wire, h30)

        stack.label(kind="ja3", value=wire[0]["ja3"], action="deny", client_name="python")
        time.sleep(1.2)  # label_cache_seconds (also the cached "nothing known" for the hash)
        for port, log, logged in ((trixie.IMAPS, stack.dovecot_log, h35),
                                  (O30_PORTS["imaps"], o30_log, h30)):  # fmt: skip
            again = next(stack.users)
            got = stack.login("python", again, port=port)
            assert not got["ok"] and REJECT_MSG in got["text"], (port, got, stack.log_tail())
            assert _logged(stack, again, log=log)[0]["ja3_hash"] == logged["ja3_hash"]
            rows = [d for d in stack.decisions(again) if d["command"] == "allow/before"]
            assert rows and rows[0]["rule"] == "label_deny", rows


@pytest.mark.parametrize("stack", ["capture"], indirect=True)
def test_the_capture_tells_which_openssl_this_dovecot_links(stack: Stack, first_round):
    ready = stack.http("GET", "/readyz")["dovecot_openssl_profile"]
    # OpenSSL 3.5 clients (curl, Python) offer extension 27, which only 3.2+ keeps.
    assert ready["profile"] == "openssl-3.2", ready
    assert ready["connections"]["none"] == 0, ready
    metrics = stack.http("GET", "/metrics")
    assert 'ja3svc_dovecot_profile_connections_total{outcome="openssl-3.2"}' in metrics
    serve_log = stack.logs["serve"].read_text(errors="replace")
    assert serve_log.count("Dovecot OpenSSL profile detected") == 1, serve_log[-2000:]


def test_a_login_name_dovecot_does_not_know_counts_on_its_network_only(
    stack: Stack, first_round
):
    """Dovecot 2.4 reports a login whose name its passdb does not know with fail_type
    "account" (Dovecot's report is the oracle: the service keeps it as sent): the failure is
    recorded (every failed account counts on its own network) but not among the failures on
    existing accounts that may count everywhere (README, "Reputation model")."""
    nss = first_round[("nss", "imap", "tls")]["ja3_hash"]
    path = f"/api/v1/fingerprints/ja3_dovecot/{nss}"
    before = stack.http("GET", path)["failures"]
    got = stack.login("nss", "no-such-user")
    assert not got["ok"], (got, stack.log_tail())
    deadline = time.monotonic() + 10
    after = before
    while time.monotonic() < deadline and after["distinct_accounts"] == before["distinct_accounts"]:
        time.sleep(0.3)  # the report's write is batched
        after = stack.http("GET", path)["failures"]
    assert after["distinct_accounts"] == before["distinct_accounts"] + 1, (before, after)
    assert after["counted_accounts"] == before["counted_accounts"], (before, after)
    # And exactly what Dovecot sent, as the service stored it.
    db = sqlite3.connect(stack.wd.host / "data" / "ja3svc.sqlite3")
    try:
        rows = db.execute(
            "SELECT fail_type, network FROM auth_failures WHERE username = 'no-such-user'"
        ).fetchall()
    finally:
        db.close()
    network = ".".join(stack.net.client.ipv4.split(".")[:3]) + ".0/24"
    assert rows and set(rows) == {("account", network)}, rows


def test_no_tracebacks_in_the_service_log(stack: Stack, first_round):
    assert "Traceback" not in stack.logs["serve"].read_text(errors="replace"), stack.log_tail()
