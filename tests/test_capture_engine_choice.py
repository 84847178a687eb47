"""``ja3svc capture`` / ``serve --capture`` told to use the Rust engine in an install without
it: one line (SetupError, which both commands print as such), and the database let go."""

from __future__ import annotations

from pathlib import Path

import pytest
from ja3svc.capture.service_setup import SetupError, prepare_capture
from ja3svc.config.settings import load_settings

from tests.unit.test_live_engine import no_extension


def test_native_engine_required_but_missing_is_a_setup_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    no_extension(monkeypatch)
    monkeypatch.setenv("JA3SVC_ENGINE", "native")

    class Source:
        interfaces = ("lo",)

    settings = load_settings(
        None, database_url=f"sqlite:///{tmp_path}/db.sqlite3", data_dir=str(tmp_path)
    )
    with pytest.raises(SetupError, match="Rust engine is not built") as info:
        prepare_capture(settings, Source(), None)  # type: ignore[arg-type]
    assert "\n" not in str(info.value)
