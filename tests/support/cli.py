"""Helpers shared by the test modules: run the real CLI and read what it printed, or start a
real `ja3svc serve` process."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from ja3svc.cli.main import main

from testbed.processes import free_port, stop, wait_port

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*argv: str) -> tuple[int, str, str]:
    """Run ``ja3svc ARGV`` in-process; return (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(list(argv))
    return status, out.getvalue(), err.getvalue()


def fingerprint_file(path: Path | str, *extra: str) -> tuple[list[dict[str, Any]], int]:
    """All hello records ``ja3svc pcap`` prints for one file, and its exit status."""
    status, out, _err = run_cli("pcap", "--no-progress", "-q", str(path), *extra)
    return [json.loads(line) for line in out.splitlines() if line], status


def serve_process(
    data_dir: Path, conf: Path, *args: str
) -> tuple[subprocess.Popen[bytes], int, Path]:
    """``ja3svc serve --config CONF ARGS`` on a free loopback port, listening once this returns
    (or an AssertionError with its log); the process, its port, and its log
    (``DATA_DIR/serve.log``, warnings and errors only)."""
    port = free_port()
    log = data_dir / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ja3svc.cli.main", "serve", "--port", str(port),
             "--config", str(conf), "--log-level", "warning", *args],
            cwd=ROOT, env={**os.environ, "JA3SVC_DATA_DIR": str(data_dir)},
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_port(port, proc)
    except (RuntimeError, TimeoutError):
        stop(proc)
        raise AssertionError(log.read_text()[-3000:]) from None
    return proc, port, log
