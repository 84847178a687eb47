"""/metrics of a real `ja3svc serve --workers 2` (uvicorn, SO_REUSEPORT sockets): every scrape,
whichever worker answers it, counts every worker's requests; the exposition follows
Prometheus' conventions; the Grafana dashboard in docs/ only asks for series a scrape has."""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import time
from pathlib import Path

import pytest
from ja3svc.api.metrics import series_names
from prometheus_client.parser import text_string_to_metric_families

from testbed.processes import free_port, stop, wait_port
from tests.support.api import API_KEY, allow_24
from tests.test_serve_capture import _start_serve

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "docs" / "grafana-dashboard.json"
HEADERS = {"X-API-Key": API_KEY, "Content-Type": "application/json"}


def _workers(port: int, parent: int) -> set[int]:
    listening = subprocess.run(
        ["ss", "-Hltnp", f"( sport = :{port} )"], capture_output=True, text=True
    ).stdout  # fmt: skip
    return {int(p) for p in re.findall(r"pid=(\d+)", listening)} - {parent}


def _get(port: int, path: str) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        res = conn.getresponse()
        assert res.status == 200
        assert res.getheader("Content-Type", "").startswith("text/plain; version=0.0.4")
        return res.read().decode()
    finally:
        conn.close()


def _value(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    raise AssertionError(f"{name} {labels} not in the scrape")


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve")
    port = free_port()
    proc = _start_serve(tmp, port, "--workers", "2")
    try:
        wait_port(port, proc)
        deadline = time.monotonic() + 30
        while len(_workers(port, proc.pid)) < 2:
            assert time.monotonic() < deadline, "two workers never listened"
            time.sleep(0.2)
        yield port, proc
    finally:
        stop(proc)
    # The run's metrics directory goes with it.
    assert not list(Path("/tmp").glob(f"ja3svc-metrics-*/*_{proc.pid}.db"))


def test_a_scrape_after_n_allows_through_two_workers_reports_n(two_workers):
    port, proc = two_workers
    n = 20
    served_by: set[int] = set()
    for i in range(n):
        # A new connection each: the kernel spreads them over both workers' sockets.
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request(
            "POST", "/policy?command=allow", body=allow_24(session=f"s{i}"), headers=HEADERS
        )
        res = conn.getresponse()
        assert res.status == 200 and json.loads(res.read()) == {"status": 0}
        out = subprocess.run(
            ["ss", "-Htnp", "state", "established", f"( sport = :{port} )"],
            capture_output=True, text=True,
        ).stdout  # fmt: skip
        served_by |= {int(p) for p in re.findall(r"pid=(\d+)", out)}
        conn.close()
    assert len(served_by) == 2, "both workers must have answered some allows"
    # Several scrapes, on new connections: any worker may answer each; all say n.
    for _ in range(8):
        text = _get(port, "/metrics")
        got = _value(text, "ja3svc_policy_requests_total", command="allow", code="200")
        assert got == n
        assert _value(text, "ja3svc_policy_request_seconds_count", command="allow") == n
        verdicts = sum(
            s.value
            for f in text_string_to_metric_families(text)
            for s in f.samples
            if s.name == "ja3svc_policy_verdicts_total"
        )
        assert verdicts == n
    # Process metrics of both workers, told apart by pid.
    pids = {
        s.labels["pid"]
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "process_resident_memory_bytes"
    }
    assert pids == {str(p) for p in _workers(port, proc.pid)}


def test_exposition_follows_prometheus_conventions(two_workers):
    port, _ = two_workers
    text = _get(port, "/metrics")
    families = list(text_string_to_metric_families(text))
    for f in families:
        if f.type == "counter":
            # prometheus_client's parser gives the family name without `_total`; every
            # sample of a counter carries it.
            assert all(s.name == f.name + "_total" for s in f.samples), f.name
    counters = {f.name for f in families if f.type == "counter"}
    assert {"ja3svc_policy_requests", "ja3svc_policy_degraded",
            "ja3svc_policy_writes_dropped"} <= counters  # fmt: skip
    # Counters that never moved are exported as 0.
    assert _value(text, "ja3svc_policy_degraded_total", reason="timeout") == 0
    assert _value(text, "ja3svc_policy_writes_dropped_total") == 0
    assert _value(text, "ja3svc_policy_requests_total", command="report", code="401") == 0
    info = next(f for f in families if f.name == "ja3svc_build_info")
    (sample,) = info.samples
    assert sample.value == 1 and sample.labels["version"] and sample.labels["python"]
    assert any(f.name == "process_cpu_seconds" for f in families)


def _panel_exprs(dashboard: dict) -> list[str]:
    exprs = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            exprs.append(target["expr"])
    return exprs


def test_every_dashboard_panel_asks_for_series_a_scrape_has(two_workers):
    port, _ = two_workers
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = _panel_exprs(dashboard)
    assert len(exprs) >= 6
    have = set(series_names(_get(port, "/metrics")))
    for expr in exprs:
        names = _series_in(expr)
        assert names, expr
        missing = names - have
        assert not missing, f"{expr}: {missing} not in a real scrape"


PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"}


def _series_in(expr: str) -> set[str]:
    """Metric names a PromQL expression selects: identifiers that are not functions,
    keywords, label names in `{...}` or `by (...)`, nor range durations."""
    bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", expr)
    bare = re.sub(r"\b(by|without)\s*\([^)]*\)", " ", bare)
    return {
        name
        for name in re.findall(r"\b([a-z_][a-z0-9_]*)\b(?!\s*\()", bare)
        if name not in PROMQL_WORDS
    }
