"""The core is typed: ``mypy --strict`` on ``ja3svc/`` (the pinned mypy of the dev extra).

Only the core: the edges talk to untyped or loosely typed libraries, the core talks to the
standard library and ``cryptography``, which are typed, so strict mode holds there.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.paths import REPO


def test_mypy_strict_on_the_core(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path / "cache"),
         "ja3svc"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found" in result.stdout
