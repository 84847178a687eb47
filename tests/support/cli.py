"""Helpers shared by the test modules: run the real CLI and read what it printed."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

from ja3svc.cli.main import main


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
