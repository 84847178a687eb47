"""The fast part of the suite: no database, no root, no network, no external tool.

``python -m pytest tests/unit`` runs it alone. To keep it that way the session fails when a
unit-only run ends with SQLAlchemy loaded: some fixture or code path reached for the store.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parent


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    items = getattr(session, "items", [])
    unit_only = bool(items) and all(Path(str(item.path)).is_relative_to(UNIT) for item in items)
    if unit_only and "sqlalchemy" in sys.modules:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(
                "tests/unit loaded sqlalchemy: a unit test reached the database layer", red=True
            )
