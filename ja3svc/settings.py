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
from typing import Any, Literal

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_data_dir() -> Path:
    """Per-user data directory (XDG): ``$XDG_DATA_HOME/ja3svc`` or ``~/.local/share/ja3svc``."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "ja3svc"


class StoreSettings(BaseModel):
    """Fingerprint database and the write path into it (owned by the store)."""

    # Sightings per write transaction; larger batches amortise the commit, smaller ones make
    # captured hellos visible to the policy service sooner.
    batch_size: int = Field(default=500, ge=1, le=100_000)
    # Sightings, auth failures and decisions older than this are pruned (`ja3svc db prune`);
    # fingerprint aggregates and labels are kept. None keeps everything.
    retention_days: int | None = Field(default=90, ge=1)
    # Migrate the schema to head on first use. None: only for SQLite (one host, nothing to set
    # up); a shared PostgreSQL is upgraded once, explicitly, with `ja3svc db upgrade`.
    auto_upgrade: bool | None = None
    # Where batches go while the database is unreachable; empty means ``data_dir/spool``.
    spool_dir: Path | None = None
    # After a failed write, spool without retrying the database for this long.
    retry_interval_seconds: float = Field(default=5.0, ge=0)


PolicyAction = Literal["allow", "tarpit", "reject"]


class PolicySettings(BaseModel):
    """Verdict rules of the Dovecot policy service (owned by the policy engine).

    Attribute paths use Dovecot's own notation: ``attrs/ja3`` is the key ``ja3`` inside the
    object ``attrs``; the first path present in a request wins.
    """

    # --- credentials -----------------------------------------------------------------------
    # Accepted Dovecot credentials: the value of ``api_header`` (Dovecot's
    # ``auth_policy_server_api_header``) or the password of HTTP Basic from the URL. Empty means
    # the policy endpoint is open (logged as a warning at start).
    api_keys: list[str] = Field(default_factory=list)
    api_header: str = "X-API-Key"
    # Bearer token (or ``X-Admin-Token``) for /api/v1; empty disables the admin API (401).
    admin_token: str = ""

    # --- where Dovecot puts things -----------------------------------------------------------
    ja3_attributes: list[str] = Field(default_factory=lambda: ["attrs/ja3", "ja3"])
    # Label kinds the Dovecot hash is looked up under: its own variant, then standard JA3
    # (identical for plain OpenSSL clients, see fingerprints.md).
    ja3_label_kinds: list[str] = Field(default_factory=lambda: ["ja3_dovecot", "ja3"])
    peer_ip_attributes: list[str] = Field(
        default_factory=lambda: ["conn/real_rip", "conn/ip", "real_rip", "real_remote_ip"]
    )
    peer_port_attributes: list[str] = Field(
        default_factory=lambda: ["conn/real_rport", "conn/port", "real_rport", "real_remote_port"]
    )
    login_attribute: str = "login"
    session_attribute: str = "session_id"
    remote_attribute: str = "remote"

    # --- verdict rules (see ja3svc.policy.engine.RULES) ---------------------------------------
    unknown_action: PolicyAction = "allow"  # fingerprint with no label and never seen
    no_fingerprint_action: PolicyAction = "allow"  # request without any fingerprint
    new_fingerprint_action: PolicyAction = "allow"  # established account, fingerprint new to it
    user_min_successes: int = Field(default=3, ge=1)  # successes that make an account established
    tarpit_seconds: int = Field(default=5, ge=1, le=60)
    # Deny labels below this confidence (0-100, as stored) only tarpit: public lists
    # contradict each other, so one low-confidence source must not lock clients out.
    deny_min_confidence: int = Field(default=80, ge=0, le=100)
    # Per-account overrides, checked first: login -> "allow", "reject", "tarpit" or "tarpit:N".
    user_actions: dict[str, str] = Field(default_factory=dict)
    reputation_window_seconds: int = Field(default=3600, ge=1)
    reputation_tarpit_accounts: int = Field(default=5, ge=0)  # 0 disables
    reputation_reject_accounts: int = Field(default=20, ge=0)  # 0 disables
    log_only: bool = False
    reject_message: str = "Login refused by policy."
    # Database unreachable and the label cache cannot answer: proceed (True) or reject.
    fail_open: bool = True

    # --- mechanics --------------------------------------------------------------------------
    # An allow whose session_id had an allow within this many seconds is the after-auth allow.
    session_window_seconds: int = Field(default=120, ge=1)
    label_cache_seconds: float = Field(default=5.0, ge=0.0)
    reputation_cache_seconds: float = Field(default=2.0, ge=0.0)
    db_timeout_seconds: float = Field(default=0.5, gt=0.0)
    audit_log: bool = True


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

    def resolved_spool_dir(self) -> Path:
        return self.store.spool_dir or self.data_dir / "spool"


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Build settings from defaults, an optional TOML file, the environment and ``overrides``."""
    path = config_file or os.environ.get("JA3SVC_CONFIG")
    file_values: dict[str, Any] = {}
    if path:
        with open(path, "rb") as fh:
            file_values = tomllib.load(fh)
    # Environment beats the file: pydantic-settings gives init kwargs priority, so drop file keys
    # that the environment sets.
    env_keys = {
        k[len("JA3SVC_") :].split("__")[0].lower() for k in os.environ if k.startswith("JA3SVC_")
    }
    merged = {k: v for k, v in file_values.items() if k not in env_keys}
    merged.update(overrides)
    return Settings(**merged)
