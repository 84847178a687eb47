"""Settings shared by the CLI, the capture worker and the HTTP service.

Sources, strongest first: explicit keyword arguments, environment variables ``JA3SVC_*``
(nested sections with ``__``, e.g. ``JA3SVC_POLICY__UNKNOWN_ACTION=tarpit``), an optional TOML
config file named by ``JA3SVC_CONFIG`` or passed to :func:`load_settings`, then defaults.
Nothing here opens a database or a socket; the caller decides when to read settings.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_data_dir() -> Path:
    """Per-user data directory (XDG): ``$XDG_DATA_HOME/ja3svc`` or ``~/.local/share/ja3svc``."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "ja3svc"


class StoreSettings(BaseModel):
    """Fingerprint database and the write path into it (owned by the store)."""

    batch_size: int = Field(default=500, ge=1, le=100_000)
    retention_days: int | None = Field(default=90, ge=1)


class PolicySettings(BaseModel):
    """Verdict rules of the Dovecot policy service (owned by the policy engine)."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="JA3SVC_", env_nested_delimiter="__", extra="forbid"
    )

    # Empty means the default SQLite file inside data_dir (created and migrated on first use).
    database_url: str = ""
    data_dir: Path = Field(default_factory=default_data_dir)
    # OpenSSL known-extension profile used for Dovecot's JA3 variant (see ja3svc.dovecot).
    dovecot_openssl_profile: str = "openssl-3.0"
    store: StoreSettings = StoreSettings()
    policy: PolicySettings = PolicySettings()

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'ja3svc.sqlite3'}"


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Build settings from defaults, an optional TOML file, the environment and ``overrides``."""
    path = config_file or os.environ.get("JA3SVC_CONFIG")
    file_values: dict[str, Any] = {}
    if path:
        with open(path, "rb") as fh:
            file_values = tomllib.load(fh)
    # Environment beats the file: pydantic-settings gives init kwargs priority, so drop file keys
    # that the environment sets.
    env_keys = {k[len("JA3SVC_") :].split("__")[0].lower() for k in os.environ if k.startswith("JA3SVC_")}
    merged = {k: v for k, v in file_values.items() if k not in env_keys}
    merged.update(overrides)
    return Settings(**merged)
