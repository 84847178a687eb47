"""The defaults of the settings that a command may need before (or without) loading settings.

``ja3svc pcap --store`` with nothing configured (no config file, no ``JA3SVC_`` variable) needs
only where the database and the spool are and how large a batch is; building ``Settings`` for
that means importing pydantic and pydantic-settings, about a sixth of a second, which is most of
what storing a small capture costs. ``ja3svc.config.settings`` takes its defaults from here, so
both ways agree.
"""

from __future__ import annotations

import os
from pathlib import Path

# Sightings per write transaction (``store.batch_size``).
STORE_BATCH_SIZE = 500


def default_data_dir() -> Path:
    """Per-user data directory (XDG): ``$XDG_DATA_HOME/ja3svc`` or ``~/.local/share/ja3svc``."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "ja3svc"


def default_database_url(data_dir: Path) -> str:
    """The SQLite file used when no database URL is set: created and migrated on first use."""
    return f"sqlite:///{data_dir / 'ja3svc.sqlite3'}"


def default_spool_dir(data_dir: Path) -> Path:
    """Where batches wait while the database is unreachable, unless ``store.spool_dir`` says."""
    return data_dir / "spool"
