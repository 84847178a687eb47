"""schemathesis over every operation of a real `ja3svc serve`'s /openapi.json, all checks.

The server runs as its own process (uvicorn, the real HTTP parser) on SQLite and on PostgreSQL.
Every check is on: no 5xx, responses and status codes as documented, invalid input refused,
valid input accepted, the Allow header of a 405, ... Examples are bounded and the seed fixed,
so the run takes about half a minute per backend and a failure reproduces.

Strings are generated as UTF-8 (``--generation-codec utf-8``): a lone surrogate is valid in a
JSON escape but is not a Unicode scalar value, so no string in the document can hold one; the
service refuses them with a 422 (tests/test_api_hostile.py). NUL is generated: the document
says by a pattern that text fields refuse it.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from testbed.processes import stop
from tests.conftest import BACKENDS
from tests.support.api import ADMIN, API_KEY
from tests.support.cli import serve_process
from tests.support.database import fresh_pg_database


def _serve(tmp_path: Path, database_url: str) -> tuple[subprocess.Popen[bytes], int, Path]:
    conf = tmp_path / "serve.toml"
    conf.write_text(
        f'database_url = "{database_url}"\n[store]\nauto_upgrade = true\n'
        f'[policy]\napi_keys = ["{API_KEY}"]\nadmin_token = "{ADMIN}"\n'
    )
    return serve_process(tmp_path, conf)


def _schemathesis(port: int, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "run",
         f"http://127.0.0.1:{port}/openapi.json", "--checks", "all",
         "--seed", "20261203", "--generation-codec", "utf-8", "--no-color",
         "--request-timeout", "10", *args],
        capture_output=True, text=True, timeout=400, cwd=cwd,
    )  # fmt: skip


@pytest.mark.timeout(600)
@pytest.mark.parametrize("backend", BACKENDS)
def test_schemathesis_finds_no_5xx_and_no_schema_violation(backend, tmp_path, request):
    if backend == "postgresql":
        cm = fresh_pg_database(request.getfixturevalue("pg_admin_url"))
        url = cm.__enter__()
        request.addfinalizer(lambda: cm.__exit__(None, None, None))
    else:
        url = f"sqlite:///{tmp_path / 'st.sqlite3'}"
    proc, port, log = _serve(tmp_path, url)
    try:
        # --max-time bounds the run on a busy machine; what ran until then must all pass.
        # Run in tmp_path: schemathesis keeps a cache of failures in its working directory.
        with_token = _schemathesis(
            port,
            tmp_path,
            "--header",
            f"X-Admin-Token: {ADMIN}",
            "--max-examples",
            "15",
            "--max-time",
            "90",
        )
        # And as a stranger: every admin operation must answer its documented 401.
        without = _schemathesis(
            port, tmp_path, "--max-examples", "3", "--max-time", "40", "--warnings", "off"
        )
    finally:
        stop(proc)
    for run in (with_token, without):
        assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
        assert "No issues found" in run.stdout
        # Every operation was exercised, none skipped.
        selected = re.search(r"Selected: (\d+)/(\d+)", run.stdout)
        assert selected and selected[1] == selected[2], run.stdout[-1500:]
        assert f"Tested: {selected[1]}" in run.stdout, run.stdout[-1500:]
    assert "Traceback" not in log.read_text()
