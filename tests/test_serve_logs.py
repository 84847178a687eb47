"""Every line a real `ja3svc serve` writes is one JSON object in one format: ja3svc's loggers,
uvicorn's error and access loggers, in the supervisor and in the workers; times are ISO 8601
with the zone; each verdict has a log line, and allows can be sampled."""

from __future__ import annotations

import datetime
import http.client
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from testbed.processes import free_port, stop, wait_port
from tests.support.api import API_KEY, allow_24

ROOT = Path(__file__).resolve().parents[1]
HEADERS = {"X-API-Key": API_KEY, "Content-Type": "application/json"}
DENIED = "e7eca2baf4458d095b7f45da28c16c34"


def _serve(tmp: Path, *args: str, sample: float = 1.0) -> tuple[subprocess.Popen[bytes], int, Path]:
    db = tmp / "s.sqlite3"
    conf = tmp / "serve.toml"
    conf.write_text(
        f'database_url = "sqlite:///{db}"\n[policy]\napi_keys = ["{API_KEY}"]\n'
        f"decision_log_sample = {sample}\n"
    )
    # A deny label, so that one verdict is a reject.
    subprocess.run(
        [sys.executable, "-m", "ja3svc.cli.main", "labels", "add", DENIED, "--action", "deny",
         "--database-url", f"sqlite:///{db}"],
        check=True, capture_output=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    port = free_port()
    log = tmp / "stderr.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "ja3svc.cli.main", "serve", "--port", str(port),
         "--config", str(conf), "--access-log", *args],
        stdout=subprocess.DEVNULL, stderr=open(log, "wb"), cwd=ROOT,
        env={**os.environ, "JA3SVC_DATA_DIR": str(tmp)},
    )  # fmt: skip
    return proc, port, log


def _post(port: int, body: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", "/policy?command=allow", body=body, headers=HEADERS)
        res = conn.getresponse()
        res.read()
        return res.status
    finally:
        conn.close()


def _lines(log: Path) -> list[dict]:
    out = []
    for raw in log.read_text().splitlines():
        record = json.loads(raw)  # every line, or the test fails here
        when = datetime.datetime.fromisoformat(record["time"])
        assert when.utcoffset() == datetime.timedelta(0), raw
        assert abs(when.timestamp() - record["ts"]) < 0.002, raw
        out.append(record)
    return out


@pytest.mark.parametrize("workers", ["1", "2"])
def test_every_line_is_json_with_a_zoned_time(tmp_path, workers):
    proc, port, log = _serve(tmp_path, "--workers", workers)
    try:
        wait_port(port, proc, timeout=60)
        time.sleep(1.0 if workers == "2" else 0)  # the second worker's socket
        statuses = [_post(port, allow_24(login=f"u{i}", session=f"s{i}")) for i in range(6)]
        statuses.append(_post(port, allow_24(login="bad", session="b", ja3=DENIED)))
        statuses.append(_post(port, "{not json"))
    finally:
        stop(proc)
    assert statuses == [200] * 7 + [400]
    records = _lines(log)
    loggers = {r["logger"] for r in records}
    assert {"uvicorn.error", "uvicorn.access", "ja3svc.policy"} <= loggers, loggers
    access = [r for r in records if r["logger"] == "uvicorn.access"]
    assert len(access) == 8 and {r["status"] for r in access} == {200, 400}
    assert all(r["method"] == "POST" and r["path"] == "/policy?command=allow" for r in access)
    verdicts = [r for r in records if r["msg"] == "verdict"]
    assert sorted(r["action"] for r in verdicts) == ["allow"] * 6 + ["reject"]
    assert "pwhash" not in log.read_text()


def test_allow_verdicts_can_be_sampled_away(tmp_path):
    proc, port, log = _serve(tmp_path, sample=0.0)
    try:
        wait_port(port, proc, timeout=60)
        for i in range(5):
            assert _post(port, allow_24(login=f"u{i}", session=f"s{i}")) == 200
        assert _post(port, allow_24(login="bad", session="b", ja3=DENIED)) == 200
    finally:
        stop(proc)
    verdicts = [r for r in _lines(log) if r["msg"] == "verdict"]
    # Rejects and tarpits are always logged; allows only in the sampled share.
    assert [r["action"] for r in verdicts] == ["reject"]
