"""The Dovecot endpoint through the ASGI app: protocol, credentials, verdicts, audit, outages."""

from __future__ import annotations

import base64
import json
import logging

import pytest
from ja3svc.api.app import create_app
from sqlalchemy.exc import OperationalError

from tests.support.api import (
    ADMIN,
    API_KEY,
    DOVECOT_HEADERS,
    REPORT_23,
    REPORT_24_FAIL,
    AppClient,
    H,
    allow_24,
    make_settings,
    report_24,
)

AUTH = {**DOVECOT_HEADERS, "X-API-Key": API_KEY}
ADMIN_H = {"Authorization": f"Bearer {ADMIN}"}
OTHER = "b7e9d913d85c071f5b806d59601e9b96"


@pytest.fixture
def make_client(tmp_path):
    clients: list[AppClient] = []

    def make(**policy):
        client = AppClient(create_app(make_settings(tmp_path, **policy)))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for c in clients:
        c.__exit__(None, None, None)


@pytest.fixture
def client(make_client):
    return make_client()


def allow(client, body, url="/policy?command=allow", headers=AUTH):
    r = client.post(url, content=body, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def add_label(client, **fields):
    r = client.post("/api/v1/labels", json=fields, headers=ADMIN_H)
    assert r.status_code == 201, r.text
    return r.json()


def service(client):
    return client.app.state.service


# --- protocol ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "/policy?command=allow",
        "/?command=allow",
        "/command/allow",
        "/policy?tenant=a&command=allow",
        "/policy??command=allow",
    ],
)
def test_allow_routes(client, url):
    assert allow(client, allow_24(), url) == {"status": 0}


def test_one_router_for_the_endpoint(client):
    """Dovecot's paths are dispatched by api.app alone (FastAPI's router has none of them);
    what is not the endpoint is left to FastAPI."""
    paths = {getattr(r, "path", None) for r in client.app.routes}
    assert not paths & {"/policy", "/command/{command}"}
    assert "/" in paths  # the console's GET only
    for url in ("/policy", "/command/allow"):
        r = client.get(url, headers=AUTH)
        assert (r.status_code, r.headers["allow"]) == (405, "POST")
        assert r.json()["error"] == "method_not_allowed"
    assert client.get("/", headers=AUTH).status_code == 303  # the console
    for url in ("/command/allow/x", "/command/", "/policyx?command=allow", "/api/policy"):
        assert client.post(url, content=allow_24(), headers=AUTH).status_code == 404, url


@pytest.mark.parametrize("url", ["/policy?command=report", "/?command=report", "/command/report"])
@pytest.mark.parametrize("body", [REPORT_23, REPORT_24_FAIL])
def test_report_answers_ok(client, url, body):
    r = client.post(url, content=body, headers=AUTH)
    assert (r.status_code, r.json()) == (200, {"status": "ok"})


@pytest.mark.parametrize(
    ("url", "body", "needle"),
    [
        ("/policy?command=allow", "{not json", "not valid JSON"),
        ("/policy?command=allow", "[1,2]", "JSON object"),
        ("/policy?command=allow", '{"login":["a"]}', "login"),
        ("/policy?command=allow", '{"login":true}', "login"),
        ("/policy?command=report", '{"login":"a","success":"yes"}', "success"),
        ("/policy?command=allow", '{"login":"a","tls":1}', "tls"),
        ("/policy?command=drop", "{}", "unknown command"),
        ("/policy", "{}", "unknown command"),
        ("/command/reset", "{}", "unknown command"),
    ],
)
def test_bad_requests_get_400_with_reason(client, url, body, needle):
    r = client.post(url, content=body, headers=AUTH)
    assert r.status_code == 400
    assert r.json()["error"] == "bad_request" and needle in r.json()["reason"]


def test_numbers_and_nesting_are_accepted(client):
    body = '{"login":"a","conn":{"real_rip":"127.0.0.1","real_rport":49282},"tls":false}'
    assert allow(client, body) == {"status": 0}


def test_mangled_deep_attribute(make_client):
    client = make_client(ja3_attributes=["x/y/z"])
    add_label(client, kind="ja3", value=H, action="deny")
    body = json.dumps({"login": "a", "x": {"y": {"y/z": H}}, "session_id": "m1"})
    assert allow(client, body)["status"] == -1


# --- credentials ---------------------------------------------------------------------------


def test_missing_and_wrong_credentials_get_401_json(client):
    r = client.post("/policy?command=allow", content=allow_24(), headers=DOVECOT_HEADERS)
    assert (r.status_code, r.json()["reason"]) == (401, "missing credential")
    r = client.post("/policy?command=allow", content=allow_24(), headers={"X-API-Key": "nope"})
    assert (r.status_code, r.json()["reason"]) == (401, "wrong credential")


def test_basic_auth_password_and_custom_header(make_client):
    client = make_client(api_header="X-Dovecot-Token")
    basic = base64.b64encode(f"dovecot:{API_KEY}".encode()).decode()
    assert allow(client, allow_24(), headers={"Authorization": f"Basic {basic}"}) == {"status": 0}
    assert allow(client, allow_24(), headers={"X-Dovecot-Token": API_KEY}) == {"status": 0}
    bad = base64.b64encode(b"dovecot:wrong").decode()
    r = client.post("/?command=allow", content="{}", headers={"Authorization": f"Basic {bad}"})
    assert r.status_code == 401


def test_credential_rules_on_raw_headers():
    """The endpoint checks the raw ASGI headers: the first of a repeated header counts, an
    empty Authorization is no credential, and a non-ASCII key matches its UTF-8 bytes."""
    from ja3svc.api.auth import DovecotCredentials

    creds = DovecotCredentials("X-Dovecot-Token", ["s3cret", "clé"])
    assert creds.check([(b"x-dovecot-token", b" s3cret ")]) is None
    assert creds.check([(b"x-api-key", "clé".encode())]) is None
    assert creds.check([(b"x-api-key", b"nope"), (b"x-api-key", b"s3cret")]) == "wrong credential"
    assert creds.check([(b"authorization", b""), (b"host", b"x")]) == "missing credential"
    assert creds.check([(b"authorization", b"Basic !!")]) == "wrong credential"
    basic = base64.b64encode("dovecot:clé".encode())
    assert creds.check([(b"authorization", b"Basic " + basic)]) is None
    assert DovecotCredentials("X-API-Key", []).check([]) is None  # no keys: open endpoint


def test_admin_api_needs_token(client):
    assert client.get("/api/v1/stats").status_code == 401
    r = client.get("/api/v1/stats", headers={"Authorization": "Bearer wrong"})
    assert (r.status_code, r.json()["reason"]) == (401, "wrong admin token")
    # The Dovecot key is not an admin token.
    assert client.get("/api/v1/stats", headers={"X-Admin-Token": API_KEY}).status_code == 401
    assert client.get("/api/v1/stats", headers={"X-Admin-Token": ADMIN}).status_code == 200


def test_admin_api_disabled_without_token(make_client):
    client = make_client(admin_token="")
    r = client.get("/api/v1/stats", headers={"Authorization": "Bearer "})
    assert r.status_code == 401 and "disabled" in r.json()["reason"]


# --- verdicts ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["ja3", "ja3_dovecot"])
def test_deny_label_rejects_with_message(make_client, kind):
    client = make_client(reject_message="Your mail client is blocked")
    add_label(client, kind=kind, value=H, action="deny", client_name="bruteforcer")
    assert allow(client, allow_24()) == {"status": -1, "msg": "Your mail client is blocked"}


def test_tarpit_only_on_first_allow_of_a_session(client):
    add_label(client, kind="ja3", value=H, action="tarpit", tarpit_seconds=3)
    assert allow(client, allow_24(session="t1")) == {"status": 3}
    assert allow(client, allow_24(session="t1")) == {"status": 0}  # after-auth allow
    client.post("/policy?command=report", content=report_24("ivan", "t1", True), headers=AUTH)
    assert allow(client, allow_24(session="t2")) == {"status": 3}


def test_unknown_action_and_known_fingerprint(make_client):
    client = make_client(unknown_action="reject")
    assert allow(client, allow_24())["status"] == -1
    add_label(client, kind="ja3", value=H, action="none", client_name="Thunderbird")
    assert allow(client, allow_24(session="k2")) == {"status": 0}


def test_per_user_learning(make_client):
    client = make_client(new_fingerprint_action="reject", user_min_successes=2)
    for i in range(2):
        assert allow(client, allow_24("carol", f"l{i}"))["status"] == 0
        client.post("/?command=report", content=report_24("carol", f"l{i}", True), headers=AUTH)
    service(client).writer.flush()
    assert allow(client, allow_24("carol", "l9")) == {"status": 0}
    verdict = allow(client, allow_24("carol", "l10", ja3=OTHER))
    assert verdict["status"] == -1
    # Another account has no history: not affected.
    assert allow(client, allow_24("dave", "l11", ja3=OTHER))["status"] == 0
    r = client.get(f"/api/v1/fingerprints/ja3_dovecot/{H}", headers=ADMIN_H)
    assert [u["username"] for u in r.json()["users"]] == ["carol"]


def test_reputation_across_accounts(make_client):
    client = make_client(reputation_tarpit_accounts=3, reputation_reject_accounts=5)
    for i in range(5):
        body = report_24(f"user{i}", f"r{i}", False)
        client.post("/?command=report", content=body, headers=AUTH)
        service(client).writer.flush()
        status = allow(client, allow_24("victim", f"v{i}"))["status"]
        assert status == (0 if i < 2 else 5 if i < 4 else -1), i
    # Policy rejections are not evidence: they do not count.
    body = json.loads(report_24("user9", "r9", False))
    body["policy_reject"] = True
    client.post("/?command=report", content=json.dumps(body), headers=AUTH)
    r = client.get(f"/api/v1/fingerprints/ja3_dovecot/{H}", headers=ADMIN_H).json()
    assert r["failures"]["distinct_accounts"] == 5


def test_user_override_for_dovecot_23_without_ja3(make_client):
    client = make_client(user_actions={"bob": "reject", "carol": "tarpit:2"})
    body23 = '{"login":"%s","remote":"127.0.0.1","session_id":"%s","tls":true}'
    assert allow(client, body23 % ("bob", "a"))["status"] == -1
    assert allow(client, body23 % ("carol", "b")) == {"status": 2}
    assert allow(client, body23 % ("alice", "c")) == {"status": 0}


def test_log_only_answers_zero_and_audits(make_client):
    client = make_client(log_only=True)
    add_label(client, kind="ja3", value=H, action="deny")
    assert allow(client, allow_24(session="lo")) == {"status": 0}
    rows = client.get("/api/v1/decisions", headers=ADMIN_H).json()
    assert rows[0]["action"] == "log:reject" and "log-only" in rows[0]["reason"]


def test_audit_log_and_no_pwhash_anywhere(client, caplog):
    add_label(client, kind="ja3", value=H, action="deny", client_name="hydra")
    caplog.set_level(logging.DEBUG, logger="ja3svc")
    allow(client, allow_24(session="au"))
    client.post("/?command=report", content=REPORT_24_FAIL, headers=AUTH)
    rows = client.get("/api/v1/decisions?limit=10", headers=ADMIN_H).json()
    assert [r["command"] for r in rows[:2]] == ["report", "allow/before"]
    deny = rows[1]
    assert deny["rule"] == "label_deny" and deny["status"] == -1
    assert deny["labels"][0]["client_name"] == "hydra"
    text = json.dumps(rows) + caplog.text
    assert "0c54" not in text and API_KEY not in text
    assert client.get("/api/v1/decisions?username=nobody", headers=ADMIN_H).json() == []


# --- outages -------------------------------------------------------------------------------


def _break_database(client, monkeypatch):
    def boom(*a, **k):
        raise OperationalError("SELECT", {}, Exception("database is down"))

    monkeypatch.setattr(service(client).store, "run", boom)


def test_database_outage_uses_cache_and_readyz_degraded(make_client, monkeypatch):
    client = make_client()
    add_label(client, kind="ja3", value=H, action="deny")
    assert allow(client, allow_24(session="o1"))["status"] == -1  # cached now
    _break_database(client, monkeypatch)
    service(client).labels._lru.ttl = 0  # everything stale: the outage path must use it anyway
    assert allow(client, allow_24(session="o2"))["status"] == -1
    assert allow(client, allow_24(ja3=OTHER, session="o3"))["status"] == 0  # fail open
    r = client.get("/readyz")
    assert r.status_code == 200 and r.json()["status"] == "degraded"
    assert client.get("/readyz?strict=true").status_code == 503
    assert 'ja3svc_policy_degraded_total{reason="error"} 1.0' in client.get("/metrics").text


def test_database_outage_fail_closed(make_client, monkeypatch):
    client = make_client(fail_open=False)
    _break_database(client, monkeypatch)
    assert allow(client, allow_24(session="c1"))["status"] == -1


def test_engine_bug_never_gives_5xx(client, monkeypatch):
    async def bug(req):
        raise RuntimeError("bug")

    monkeypatch.setattr(service(client), "allow", bug)
    assert allow(client, allow_24()) == {"status": 0}


# --- operations ----------------------------------------------------------------------------


def test_livez_readyz_metrics_docs(client):
    assert client.get("/livez").json() == {"status": "ok"}
    assert client.get("/readyz").json()["status"] == "ready"
    allow(client, allow_24())
    for cmd in ("x1", "x2", "x3"):
        client.post(f"/policy?command={cmd}", content="{}", headers=AUTH)
    text = client.get("/metrics").text
    assert 'ja3svc_policy_requests_total{code="200",command="allow"} 1.0' in text
    # Unknown commands fold into one series: bounded cardinality.
    assert 'ja3svc_policy_requests_total{code="400",command="other"} 3.0' in text
    assert "ja3svc_policy_request_seconds_bucket" in text
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert "/api/v1/fingerprints/{kind}/{value}" in paths
    assert "/policy?command=allow" in client.get("/openapi.json").json()["info"]["description"]


# --- connection lookup (capture correlation) -----------------------------------------------


class FakeLookup:
    """A ConnectionLookup whose blocking form must never be used by the service."""

    def __init__(self, refs):
        self.refs = refs
        self.peers = []

    def fingerprints_for(self, peer):
        raise AssertionError("the service must not block the event loop on a lookup")

    async def fingerprints_for_async(self, peer, dovecot_hash=""):
        self.peers.append(peer)
        return self.refs


def test_connection_lookup_is_awaited_only_with_a_peer(tmp_path):
    from ja3svc.policy import ConnectionPeer, FingerprintRef

    lookup = FakeLookup((FingerprintRef("ja3", OTHER),))
    app = create_app(make_settings(tmp_path), connection_lookup=lookup)
    with AppClient(app) as client:
        add_label(client, kind="ja3", value=OTHER, action="deny", client_name="bot")
        allow23 = json.loads(REPORT_23)
        for key in ("success", "policy_reject"):
            allow23.pop(key)
        # 2.3 with the socket peer: the capture's fingerprint decides, on both allows.
        assert allow(client, json.dumps(allow23))["status"] == -1
        assert allow(client, json.dumps(allow23))["status"] == -1
        assert lookup.peers == [ConnectionPeer("127.0.0.1", 49282)]  # second allow: no lookup
        # No peer attributes: no lookup at all.
        assert allow(client, allow_24(session="np")) == {"status": 0}
        assert len(lookup.peers) == 1


def test_no_connection_lookup_answers_nothing():
    import asyncio

    from ja3svc.policy import ConnectionPeer, NoConnectionLookup

    peer = ConnectionPeer("192.0.2.1", 1)
    assert asyncio.run(NoConnectionLookup().fingerprints_for_async(peer)) == ()


# --- writer --------------------------------------------------------------------------------


def test_writer_batches_and_flush_sees_everything_queued(client):
    writer = service(client).writer
    for i in range(30):
        allow(client, allow_24(login=f"w{i}", session=f"w{i}"))
    assert writer.flush(5.0)
    rows = client.get("/api/v1/decisions?limit=100", headers=ADMIN_H).json()
    assert sum(1 for r in rows if r["username"].startswith("w")) == 30


def test_writer_drops_and_counts_when_full(tmp_path):
    from ja3svc.api.writer import BatchWriter
    from ja3svc.store.database import Database
    from ja3svc.store.policy_store import PolicyStore

    db = Database.from_url(f"sqlite:///{tmp_path / 'w.sqlite3'}")
    dropped: list[int] = []
    writer = BatchWriter(PolicyStore.from_database(db), on_drop=dropped.append, max_queue=3)
    for i in range(5):  # not started: nothing drains, the bound applies
        writer.failure((1.0, f"u{i}", ("ja3", H), "192.0.2.0/24", "credentials"))
    assert dropped == [1, 1]
    assert writer.flush(1.0)  # without a thread the queue is written inline
    assert PolicyStore.from_database(db).stats()["auth_failures"] == 3
    db.dispose()


def test_large_write_batch_spans_several_statements(database):
    """More rows than one multi-row statement holds (SQLite path) and repeated successes of one
    account and fingerprint merged into one upsert row, on both databases."""
    from ja3svc.store.policy_store import DecisionRecord, PolicyStore

    store = PolicyStore.from_database(database)
    successes = [(1000.0 + i, f"u{i % 150}", ("ja3_dovecot", H)) for i in range(450)]
    failures = [(2000.0 + i, f"f{i}", ("ja3", H), "192.0.2.0/24", "") for i in range(301)]
    decisions = [
        DecisionRecord(
            3000.0 + i,
            "allow/before",
            f"d{i}",
            "192.0.2.1",
            40000 + i,
            H,
            0,
            "allow",
            "default",
            f"reason {i}",
            (),
        )
        for i in range(203)
    ]
    store.write_batch(successes, failures, decisions)
    store.write_batch(successes[:150], [], [])  # upsert onto existing rows
    stats = store.stats()
    assert stats["user_fingerprints"] == 150
    assert stats["auth_failures"] == 301
    assert stats["decisions"] == 203
    history = store.user_history("u7")
    assert history.successes == 4  # three in the first batch, one in the second
    rows = store.decisions(limit=500)
    assert sorted(r["reason"] for r in rows) == sorted(f"reason {i}" for i in range(203))


def test_metric_labels_stay_bounded_past_the_memo():
    """Label values outside the allowed set are folded into "other" however many distinct ones
    arrive, also after the memo of folded keys is full."""
    from ja3svc.api.metrics import Counter
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry()
    counter = Counter("t_total", "test", {"command": ("allow", "report")}, registry)
    for i in range(10_000):
        counter.inc(f"junk{i}")
    counter.inc("allow")
    text = generate_latest(registry).decode()
    assert 't_total{command="other"} 10000.0' in text
    assert 't_total{command="allow"} 1.0' in text
    assert 't_total{command="report"} 0.0' in text  # never incremented, still exported
    assert text.count("t_total{") == 3


def test_metric_updates_export_what_prometheus_client_exports():
    """Our counters and histograms update prometheus-client's value objects directly (see
    api.metrics): fed the same values, including ones on a bucket bound, below the first and
    past the last, they export exactly what prometheus-client's own inc/observe export."""
    import prometheus_client
    from ja3svc.api.metrics import Counter, Histogram
    from prometheus_client import CollectorRegistry, generate_latest

    buckets = (0.001, 0.01, 0.1, 1.0)
    values = [0.0, -0.5, 0.0005, 0.001, 0.0010001, 0.01, 0.05, 0.1, 1.0, 1.5, 1e9, float("inf")]
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    histogram = Histogram(
        "t_seconds", "test", {"command": ("allow", "report")}, ours, buckets=buckets
    )
    counter = Counter("t_total", "test", {"command": ("allow", "report")}, ours)
    plain = Counter("u_total", "test", {}, ours)
    oracle_h = prometheus_client.Histogram(
        "t_seconds", "test", ("command",), registry=theirs, buckets=buckets
    )
    oracle_c = prometheus_client.Counter("t", "test", ("command",), registry=theirs)
    oracle_u = prometheus_client.Counter("u", "test", registry=theirs)
    for command in ("allow", "report"):
        oracle_h.labels(command)
        oracle_c.labels(command)
    for i, value in enumerate(values):
        command = ("allow", "report")[i % 2]
        histogram.observe(value, command)
        oracle_h.labels(command).observe(value)
        counter.inc(command, amount=i)
        oracle_c.labels(command).inc(i)
        plain.inc()
        oracle_u.inc()
    assert generate_latest(ours) == generate_latest(theirs)
    # By hand: report had -0.5, 0.001 and 0.01 at or below 0.01 (a bound counts as below).
    assert b't_seconds_bucket{command="report",le="0.01"} 3.0' in generate_latest(ours)


def test_long_lived_caches_hold_nothing_the_collector_must_walk():
    """The label, history and reputation caches give back the engine's records but keep plain
    tuples, which the garbage collector stops tracking (see api.caches)."""
    import gc

    from ja3svc.api.caches import HistoryCache, LabelCache, ReputationCache

    from ja3svc.policy.facts import FingerprintRef, LabelFact, Reputation, UserHistory

    label = LabelFact("ja3", H, "deny", "bot", "malware", None, "sslbl", 90)
    labels, history, reputation = LabelCache(), HistoryCache(10, 60), ReputationCache(10, 60)
    labels.store({("ja3", H): (label,), ("ja3_dovecot", H): ()})
    known = UserHistory(frozenset({FingerprintRef("ja3", H)}), 4)
    history.put("ivan", known)
    reputation.put((("ja3", H),), "", Reputation(3, 7, 3600))
    # A tuple is untracked once its items are: a nested entry may need a pass per level.
    for _ in range(4):
        gc.collect()
    for lru in (labels._lru, history._lru, reputation._lru):
        for entry in lru._data.values():
            assert not gc.is_tracked(entry)
    found: list[LabelFact] = []
    misses = labels.collect([("ja3", H), ("ja3_dovecot", H), ("ja4", "x")], found)
    assert (found, misses) == ([label], [("ja4", "x")])
    assert history.get("ivan") == known and history.get("olga") is None
    assert reputation.get((("ja3", H),)) == Reputation(3, 7, 3600)


def test_sqlite_writes_wait_for_another_process_without_blocking_answers(client, tmp_path):
    """The event loop writes SQLite batches itself: while another process holds the write lock
    (a capture committing), answers keep coming at once and nothing queued is lost; flush waits
    and sees everything once the lock is free."""
    import sqlite3
    import time

    svc = service(client)
    assert svc.writer._loop is not None  # inline mode on a SQLite file
    blocker = sqlite3.connect(tmp_path / "policy.sqlite3", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        for i in range(20):
            allow(client, allow_24(login=f"busy{i}", session=f"busy{i}"))
        assert time.monotonic() - started < 5.0  # no answer waited for the 30 s busy timeout
        time.sleep(0.5)  # a few writer ticks find the lock taken
        assert svc.writer.flush(0.3) is False  # still queued, not dropped
    finally:
        blocker.execute("COMMIT")
        blocker.close()
    assert svc.writer.flush(5.0)
    rows = svc.store.decisions(limit=100)
    assert sorted(r["username"] for r in rows if r["username"].startswith("busy")) == sorted(
        f"busy{i}" for i in range(20)
    )
    metrics = client.get("/metrics").text.splitlines()
    assert "ja3svc_policy_writes_dropped_total 0.0" in metrics


def test_inline_writer_checkpoints_off_the_loop(client, monkeypatch):
    import threading
    import time

    from ja3svc.api import writer as writer_module

    svc = service(client)
    loop_thread = client.portal.call(threading.get_ident)
    calls: list[int] = []
    real = svc.store.checkpoint

    def recording() -> None:
        calls.append(threading.get_ident())
        real()

    monkeypatch.setattr(svc.store, "checkpoint", recording)
    monkeypatch.setattr(writer_module, "CHECKPOINT_SECONDS", 0.0)
    allow(client, allow_24(login="cp", session="cp"))
    deadline = time.monotonic() + 5
    while not calls and time.monotonic() < deadline:
        time.sleep(0.05)
    assert calls and loop_thread not in calls


def test_inline_writer_writes_a_full_batch_once_without_a_tick_per_request():
    """Requests arriving faster than the loop yields: past a full batch, one immediate tick is
    scheduled (not one per request), and it writes everything queued, batch by batch."""
    import asyncio

    from ja3svc.api.writer import BatchWriter

    class RecordingStore:
        writes_inline = True
        writes_async = False

        def __init__(self) -> None:
            self.batches: list[int] = []

        def write_batch(self, successes, failures, decisions, wait=True) -> None:
            self.batches.append(len(successes) + len(failures) + len(decisions))

        def checkpoint(self) -> None:
            pass

    async def scenario() -> tuple[list[int], int]:
        store = RecordingStore()
        writer = BatchWriter(store, batch=10, interval=60.0)  # type: ignore[arg-type]
        writer.start()
        loop = asyncio.get_running_loop()
        scheduled = 0
        real = loop.call_soon

        def counting(*args, **kw):
            nonlocal scheduled
            scheduled += 1
            return real(*args, **kw)

        loop.call_soon = counting  # type: ignore[method-assign]
        try:
            for i in range(35):  # no await in between: the loop cannot run a tick
                writer.failure((1.0, f"u{i}", ("ja3", H), "192.0.2.0/24", "credentials"))
        finally:
            loop.call_soon = real  # type: ignore[method-assign]
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        writer.stop()
        return store.batches, scheduled

    batches, scheduled = asyncio.run(scenario())
    assert scheduled == 1
    assert batches == [10, 10, 10, 5]


def test_bodies_beyond_the_fast_json_path_parse_as_json_loads_does():
    """Dovecot's compact UTF-8 bodies take a shortcut past json.loads; whitespace, a BOM and
    every malformed body still get json.loads's exact result or message."""
    import json

    from ja3svc.api.dovecot_request import BadRequest, parse_request

    compact = b'{"login":"a","attrs":{"ja3":"x"},"tls":true}'
    for body in (compact, b"  " + compact + b"\n", b"\xef\xbb\xbf" + compact):
        req = parse_request("allow", body)
        assert (req.attributes, req.tls) == ({"login": "a", "attrs/ja3": "x"}, True)
    for body in (compact + b"x", b"{", b"", compact.replace(b"}", b",}", 1), b"\xff"):
        try:
            json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            expected = str(exc)
        with pytest.raises(BadRequest) as err:
            parse_request("allow", body)
        assert str(err.value) == f"body is not valid JSON: {expected}"


def test_every_attribute_is_checked_even_where_a_nested_one_has_the_same_path():
    from ja3svc.api.dovecot_request import BadRequest, parse_request

    with pytest.raises(BadRequest, match="'a/b' must be a string"):
        parse_request("allow", b'{"a":{"b":"x"},"a/b":[1]}')
    assert parse_request("allow", b'{"a":{"b":"x"},"c":"y"}').attributes == {"a/b": "x", "c": "y"}


def test_cache_entries_go_stale_then_make_room_in_the_order_they_were_put():
    from ja3svc.api.caches import TtlMap

    now = [0.0]
    cache: TtlMap[str, int] = TtlMap(maxsize=2, ttl=5.0, clock=lambda: now[0])
    cache.put("a", 1)
    cache.put("b", 2)
    now[0] = 6.0
    assert cache.get("a") is None and cache.get("a", allow_stale=True) == 1  # outage answer
    cache.put("a", 3)  # refreshed after the lookup missed: now the newest
    cache.put("c", 4)  # one too many: "b" was put longest ago
    assert (cache.get("b", allow_stale=True), cache.get("a"), cache.get("c")) == (None, 3, 4)


def test_inline_writer_answers_requests_between_two_batches_of_a_backlog():
    """A backlog (a checkpoint held SQLite's lock) is written one batch per tick, with what
    else the loop has to do (requests) run in between, not in one long stall of the loop."""
    import asyncio

    from ja3svc.api.writer import BatchWriter

    events: list[object] = []

    class RecordingStore:
        writes_inline = True
        writes_async = False

        def write_batch(self, successes, failures, decisions, wait=True) -> None:
            events.append(len(successes) + len(failures) + len(decisions))

        def checkpoint(self) -> None:
            pass

    async def scenario() -> None:
        writer = BatchWriter(RecordingStore(), batch=10, interval=60.0)  # type: ignore[arg-type]
        writer.start()
        for i in range(35):  # the tenth schedules a tick at once
            writer.failure((1.0, f"u{i}", ("ja3", H), "192.0.2.0/24", "credentials"))
        asyncio.get_running_loop().call_soon(events.append, "request")
        for _ in range(6):
            await asyncio.sleep(0)
        writer.stop()

    asyncio.run(scenario())
    assert events == [10, "request", 10, 10, 5]
