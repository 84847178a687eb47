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

from ja3svc.config.defaults import (
    STORE_BATCH_SIZE,
    default_data_dir,
    default_database_url,
    default_spool_dir,
)
from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class StoreSettings(BaseModel):
    """Fingerprint database and the write path into it (owned by the store)."""

    # Sightings per write transaction; larger batches amortise the commit, smaller ones make
    # captured hellos visible to the policy service sooner.
    batch_size: int = Field(default=STORE_BATCH_SIZE, ge=1, le=100_000)
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
    # Hash-only requests: an account whose most recent Dovecot hashes (up to 10) include at
    # least this many single-use ones, at least half of them, has a client that randomises
    # (GnuTLS 3.8, GREASE): a new hash is not "new to the account" there. 0 disables.
    randomising_min_hashes: int = Field(default=3, ge=0)
    tarpit_seconds: int = Field(default=5, ge=1, le=60)
    # Deny labels below this confidence (0-100, as stored) only tarpit: public lists
    # contradict each other, so one low-confidence source must not lock clients out.
    deny_min_confidence: int = Field(default=80, ge=0, le=100)
    # Per-account overrides, checked first: login -> "allow", "reject", "tarpit" or "tarpit:N".
    user_actions: dict[str, str] = Field(default_factory=dict)
    reputation_window_seconds: int = Field(default=3600, ge=1)
    reputation_tarpit_accounts: int = Field(default=5, ge=0)  # 0 disables
    reputation_reject_accounts: int = Field(default=20, ge=0)  # 0 disables
    # Reputation is scoped by remote network (README, "Reputation model"): the prefix lengths
    # of one network, and what it takes for failures to count on every network: that many
    # distinct networks, and more failed existing accounts than this many times the accounts
    # that logged in successfully with the fingerprint in the window.
    reputation_ipv4_prefix: int = Field(default=24, ge=8, le=32)
    reputation_ipv6_prefix: int = Field(default=56, ge=16, le=128)
    reputation_min_networks: int = Field(default=3, ge=1)
    reputation_success_ratio: float = Field(default=1.0, ge=0.0)
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
    # Share of allow verdicts that get a "verdict" log line (tarpit and reject always do):
    # 1.0 logs every verdict; lower it where a busy server's log volume matters.
    decision_log_sample: float = Field(default=1.0, ge=0.0, le=1.0)


# Client->server ports of the TLS and STARTTLS services a mail host runs: HTTPS, SMTPS,
# IMAPS, POP3S, IMAP, POP3, SMTP, submission, ManageSieve.
DEFAULT_CAPTURE_PORTS = [443, 465, 993, 995, 143, 110, 25, 587, 4190]


class CaptureSettings(BaseModel):
    """Live capture worker and connection correlation (owned by ``capture.worker``)."""

    # Interfaces to capture on; the command line's --interface replaces this list.
    interfaces: list[str] = Field(default_factory=list)
    # Server ports whose client side is captured (the default kernel filter is built from them).
    ports: list[int] = Field(default_factory=lambda: list(DEFAULT_CAPTURE_PORTS))
    # UDP ports whose client side is captured for QUIC (and DTLS) hellos; [] leaves UDP out.
    udp_ports: list[int] = Field(default_factory=lambda: [443])
    # A libpcap filter expression replacing the default. It must keep every client->server data
    # segment of a connection: a filter on "payload starts with 0x16" loses the segments that
    # continue a multi-segment ClientHello.
    bpf_filter: str = ""
    # Bytes kept per packet. Hellos of modern browsers span several full-sized segments, and a
    # truncated segment is a hole in the TCP stream, so the default keeps whole (GRO) packets.
    snaplen: int = Field(default=65535, ge=256, le=262144)
    # Kernel receive buffer per socket: absorbs bursts while user space is busy. Needs
    # CAP_NET_ADMIN above net.core.rmem_max; without it the kernel's maximum is used.
    receive_buffer_bytes: int = Field(default=64 << 20, ge=1 << 16)
    # Read through a TPACKET_V3 ring of about receive_buffer_bytes mapped into the process (no
    # system call per packet; more packets fit in the same bytes). False forces one recv() per
    # packet, which is also the automatic fallback when the kernel refuses the ring.
    ring: bool = True
    # Unprivileged account the worker switches to once the sockets are open ("" keeps the
    # current user, e.g. when systemd already starts it unprivileged with CAP_NET_RAW).
    user: str = ""
    # Sensor name stored with each sighting; "" means "<hostname>:<interfaces>".
    sensor: str = ""
    # Sightings reach the database at least this often (and whenever a batch is full).
    flush_interval_seconds: float = Field(default=1.0, gt=0.0, le=60.0)
    # Sightings waiting for the database thread; beyond this they are dropped and counted.
    write_queue_max: int = Field(default=50_000, ge=100)
    # TCP flows watched at once, and how long an idle flow is kept (only the client side is
    # captured, so a flow is usually forgotten by this timeout, not by a FIN/FIN exchange).
    max_flows: int = Field(default=200_000, ge=100)
    flow_idle_seconds: float = Field(default=120.0, gt=0.0)
    # Recent connections kept in memory for in-process correlation, and for how long.
    recent_connections_max: int = Field(default=100_000, ge=10)
    # How far before a policy request a hello may have been seen to count for it: a client may
    # connect, then wait before authenticating.
    correlation_window_seconds: float = Field(default=300.0, gt=0.0)
    # How long a policy request waits for its hello to appear (capture lag, database batches);
    # must stay well under Dovecot's 2 s request timeout.
    correlation_wait_seconds: float = Field(default=0.5, ge=0.0, le=1.5)
    # Counters logged as one JSON line this often (0 disables).
    metrics_log_seconds: float = Field(default=60.0, ge=0.0)


class ServeSettings(BaseModel):
    """How ``ja3svc serve`` finds connections' hellos (owned by ``cli.serve_command``)."""

    # Correlate policy requests with hellos that separate `ja3svc capture` workers store in the
    # shared database (PostgreSQL), waiting up to capture.correlation_wait_seconds for the
    # sighting. `serve --correlate-db` sets it; `serve --capture` correlates in memory first
    # and asks the database as well, whatever this says.
    correlate_database: bool = False
    # Limits that keep one client (or an attacker) from exhausting the service. Dovecot's bodies
    # are a few hundred bytes and it keeps up to 100 connections per auth process.
    max_body_bytes: int = Field(default=1 << 20, ge=1024)
    max_connections: int = Field(default=10_000, ge=16)  # also capped below RLIMIT_NOFILE
    idle_timeout_seconds: float = Field(default=60.0, gt=0.0)  # no request on a connection
    header_timeout_seconds: float = Field(default=10.0, gt=0.0)  # first byte to end of headers
    # Allow requests being judged at once per worker; beyond, an allow is answered at once by
    # fail_open (status 0, or -1 with fail_open off) and counted: Dovecot continues the login.
    max_inflight: int = Field(default=512, ge=1)
    # Without policy.api_keys the policy endpoint only starts on a loopback address, unless this
    # (or `serve --allow-open`) says that running open is intended.
    allow_open: bool = False
    docs: bool = True  # /docs, /redoc, /openapi.json
    metrics: bool = True  # /metrics


class ConsoleSettings(BaseModel):
    """The operator console under /console (owned by ``api.console``); it signs in with
    ``policy.admin_token`` and is off while that is empty."""

    enabled: bool = True
    # Secure flag of the session cookie. None: set when the request came over HTTPS (uvicorn
    # with a certificate); true behind a TLS-terminating proxy that talks plain HTTP to us.
    cookie_secure: bool | None = None
    # A session ends this long after sign-in, or at logout.
    session_seconds: int = Field(default=8 * 3600, ge=60, le=30 * 86400)
    # How often the Decisions page reloads itself in live mode.
    refresh_seconds: int = Field(default=5, ge=1, le=3600)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="JA3SVC_", env_nested_delimiter="__", extra="forbid"
    )

    # Empty means the default SQLite file inside data_dir (created and migrated on first use).
    database_url: str = ""
    data_dir: Path = Field(default_factory=default_data_dir)
    # OpenSSL known-extension profile of the `ja3_dovecot` output column (see ja3svc.dovecot;
    # the policy service matches every profile and needs no setting).
    dovecot_openssl_profile: str = "openssl-3.2"
    store: StoreSettings = StoreSettings()
    policy: PolicySettings = PolicySettings()
    capture: CaptureSettings = CaptureSettings()
    serve: ServeSettings = ServeSettings()
    console: ConsoleSettings = ConsoleSettings()

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return default_database_url(self.data_dir)

    def resolved_spool_dir(self) -> Path:
        return self.store.spool_dir or default_spool_dir(self.data_dir)


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Build settings from defaults, an optional TOML file, the environment and ``overrides``."""
    path = config_file or os.environ.get("JA3SVC_CONFIG")
    file_values: dict[str, Any] = {}
    if path:
        with open(path, "rb") as fh:
            try:
                file_values = tomllib.load(fh)
            except tomllib.TOMLDecodeError as exc:
                raise ValueError(f"{path}: {exc}") from None
    # Environment beats the file: pydantic-settings gives init kwargs priority, so drop file keys
    # that the environment sets.
    env_keys = {
        k[len("JA3SVC_") :].split("__")[0].lower() for k in os.environ if k.startswith("JA3SVC_")
    }
    merged = {k: v for k, v in file_values.items() if k not in env_keys}
    merged.update(overrides)
    return Settings(**merged)
