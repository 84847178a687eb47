"""Tables of the fingerprint database (SQLAlchemy 2 typed declarative models).

Pure definitions: importing this module opens nothing. Engines, sessions, migrations and the
write path live beside it in ``ja3svc.store``; the schema itself is created and changed only
by the Alembic migrations in ``migrations/`` (a test checks that they agree with these models).

Conventions used by every table:
- times are Unix epoch seconds (UTC) as floats: the engine reports packet times that way, they
  compare and index identically on SQLite and PostgreSQL, and "within the last N seconds" is a
  subtraction;
- fingerprint kinds, label actions and hello kinds are short strings checked by constraints,
  with the allowed values listed once here.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Float,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ja3svc.vocabulary import (
    DOVECOT_PROFILE_COLUMNS,
    FINGERPRINT_FIELDS,
    FINGERPRINT_KINDS,
    HELLO_KINDS,
    LABEL_ACTIONS,
)

# Constraint names must be deterministic: Alembic's batch mode on SQLite recreates tables and
# can only drop or alter constraints it can name, and PostgreSQL's generated names differ.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Surrogate keys: 64-bit on PostgreSQL (sightings can pass 2^31 over years of capture), but
# plain INTEGER on SQLite, where only "INTEGER PRIMARY KEY" is the auto-incrementing rowid.
BigId = BigInteger().with_variant(Integer(), "sqlite")

# Widest textual IPv6 address (with an embedded IPv4 tail) is 45 characters.
_IP = 45
_HASH = 64  # md5 hex (32) or a JA4 string (36); room for future kinds
_USERNAME = 320  # an e-mail address at its RFC 5321 maximum


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Fingerprint(Base):
    """Aggregate of every sighting of one fingerprint value; survives sighting retention."""

    __tablename__ = "fingerprints"
    __table_args__ = (
        UniqueConstraint("kind", "value"),
        CheckConstraint(_in("kind", FINGERPRINT_KINDS), name="kind"),
        # `fingerprints top` orders by count within a kind.
        Index(None, "kind", "times_seen"),
        # The console's "first seen today".
        Index(None, "first_seen"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    value: Mapped[str] = mapped_column(String(_HASH))
    # JA3/JA3N/JA3S/Dovecot string, or ja4_r for JA4; None when only the hash is known.
    full_string: Mapped[str | None] = mapped_column(Text)
    first_seen: Mapped[float] = mapped_column(Float)
    last_seen: Mapped[float] = mapped_column(Float)
    times_seen: Mapped[int] = mapped_column(BigInteger, default=0)


class Sighting(Base):
    """One hello seen by one sensor; pruned after the retention period."""

    __tablename__ = "sightings"
    __table_args__ = (
        # Storing the same capture twice must not add rows or counts: a hello is identified by
        # where it was seen, when, on which connection, and its position in the flow.
        UniqueConstraint("sensor", "ts", "src", "sport", "dst", "dport", "hello", "hello_index"),
        CheckConstraint(_in("hello", HELLO_KINDS), name="hello"),
        # Policy correlation: "the client hello from IP:port within the last N seconds".
        Index(None, "src", "sport", "ts"),
        # Retention pruning and time-ordered listings.
        Index(None, "ts"),
        # `fingerprints show HASH` lists recent sightings of a JA3.
        Index(None, "ja3_hash"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    ts: Mapped[float] = mapped_column(Float)
    # Capture host/interface ("mx1:eth0") or file ("file:capture.pcap").
    sensor: Mapped[str] = mapped_column(String(200))
    src: Mapped[str] = mapped_column(String(_IP))
    sport: Mapped[int] = mapped_column(Integer)
    dst: Mapped[str] = mapped_column(String(_IP))
    dport: Mapped[int] = mapped_column(Integer)
    transport: Mapped[str] = mapped_column(String(8))
    hello: Mapped[str] = mapped_column(String(8))
    hello_index: Mapped[int] = mapped_column(SmallInteger)
    sni: Mapped[str | None] = mapped_column(String(255))
    # JSON list of the offered (client) or selected (server) ALPN protocols.
    alpn: Mapped[str | None] = mapped_column(Text)
    tls_version: Mapped[str | None] = mapped_column(String(16))
    ja3_hash: Mapped[str | None] = mapped_column(String(32))
    ja3n_hash: Mapped[str | None] = mapped_column(String(32))
    ja4: Mapped[str | None] = mapped_column(String(_HASH))
    ja3_dovecot_hash: Mapped[str | None] = mapped_column(String(32))
    ja3s_hash: Mapped[str | None] = mapped_column(String(32))
    # JSON {profile: hash}: Dovecot's hash under every OpenSSL profile (ja3svc.dovecot), so the
    # correlation can tell which one the Dovecot of a connection uses.
    ja3_dovecot_hashes: Mapped[str | None] = mapped_column(Text)


class DovecotHash(Base):
    """Which client hellos give a Dovecot hash, under each OpenSSL profile (knowledge, kept
    while seen within the retention period).

    Dovecot sends only its hash, and the same hello hashes differently in a Dovecot linking
    OpenSSL 3.0 and one linking 3.2+ (and differently from wire JA3 for many clients). One row
    per distinct (hashes, JA3, JA4) a capture saw lets the policy service turn the hash of either
    kind of Dovecot into the hello's other fingerprints, so labels and learned fingerprints match
    with no setting.
    """

    __tablename__ = "dovecot_hashes"
    __table_args__ = (
        # Its leading column serves lookups by the OpenSSL 3.0 hash.
        UniqueConstraint("openssl30", "openssl32", "ja3_hash", "ja4"),
        Index(None, "openssl32"),
        Index(None, "last_seen"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    openssl30: Mapped[str] = mapped_column(String(32))
    openssl32: Mapped[str] = mapped_column(String(32))
    ja3_hash: Mapped[str] = mapped_column(String(32))
    ja3n_hash: Mapped[str] = mapped_column(String(32))
    ja4: Mapped[str] = mapped_column(String(_HASH))
    first_seen: Mapped[float] = mapped_column(Float)
    last_seen: Mapped[float] = mapped_column(Float)
    times_seen: Mapped[int] = mapped_column(BigInteger, default=0)


class Label(Base):
    """What one source says about one fingerprint; several sources coexist per fingerprint."""

    __tablename__ = "labels"
    __table_args__ = (
        # Also serves lookups by (kind, value), its leading columns.
        UniqueConstraint("kind", "value", "source"),
        CheckConstraint(_in("kind", FINGERPRINT_KINDS), name="kind"),
        CheckConstraint(_in("action", LABEL_ACTIONS), name="action"),
        CheckConstraint("confidence BETWEEN 0 AND 100", name="confidence"),
        CheckConstraint("tarpit_seconds IS NULL OR tarpit_seconds >= 0", name="tarpit_seconds"),
        # The label list's filters, newest first (keyset pages by id), and value prefix search
        # across kinds: at a million labels each would otherwise scan the table.
        Index(None, "source", "id"),
        Index(None, "action", "id"),
        Index(None, "value"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    value: Mapped[str] = mapped_column(String(_HASH))
    client_name: Mapped[str | None] = mapped_column(String(200))
    # mail-client, browser, library, scanner, malware, ... (free text, not an enum: lists vary).
    category: Mapped[str | None] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(8), default="none")
    tarpit_seconds: Mapped[int | None] = mapped_column(Integer)
    # manual, learned, sslbl, salesforce, trisul, foxio, ...
    source: Mapped[str] = mapped_column(String(32))
    confidence: Mapped[int] = mapped_column(SmallInteger, default=50)
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)


class UserFingerprint(Base):
    """Fingerprints an account has logged in with successfully (per-user learning)."""

    __tablename__ = "user_fingerprints"
    __table_args__ = (
        UniqueConstraint("username", "kind", "value"),
        CheckConstraint(_in("kind", FINGERPRINT_KINDS), name="kind"),
        # The accounts of one fingerprint (the fingerprint page, the admin API's lookup).
        Index(None, "kind", "value"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    username: Mapped[str] = mapped_column(String(_USERNAME))
    kind: Mapped[str] = mapped_column(String(16))
    value: Mapped[str] = mapped_column(String(_HASH))
    first_seen: Mapped[float] = mapped_column(Float)
    last_seen: Mapped[float] = mapped_column(Float)
    successes: Mapped[int] = mapped_column(Integer, default=0)


class AuthFailure(Base):
    """One failed login with a fingerprint; pruned after the retention period.

    Feeds "this fingerprint failed across many distinct accounts within a window".
    """

    __tablename__ = "auth_failures"
    __table_args__ = (
        CheckConstraint(_in("kind", FINGERPRINT_KINDS), name="kind"),
        Index(None, "kind", "value", "ts"),
        Index(None, "ts"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    ts: Mapped[float] = mapped_column(Float)
    kind: Mapped[str] = mapped_column(String(16))
    value: Mapped[str] = mapped_column(String(_HASH))
    username: Mapped[str] = mapped_column(String(_USERNAME))
    # The remote address's network as CIDR text (ja3svc.policy.network_of) and Dovecot 2.4's
    # fail_type ("credentials", "account", ...); NULL when unknown (Dovecot 2.3, older rows).
    network: Mapped[str | None] = mapped_column(String(50))
    fail_type: Mapped[str | None] = mapped_column(String(16))


class Decision(Base):
    """Audit log of policy verdicts; pruned after the retention period."""

    __tablename__ = "decisions"
    # By time for pruning and the recent list; by account, newest first, for "why was alice
    # refused?" (GET /api/v1/decisions?username=), which would otherwise scan months of rows.
    # By fingerprint for the console's fingerprint page and the decisions filter.
    __table_args__ = (
        Index(None, "ts"),
        Index(None, "username", "id"),
        Index(None, "ja3_hash", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    ts: Mapped[float] = mapped_column(Float)
    command: Mapped[str] = mapped_column(String(16))
    username: Mapped[str | None] = mapped_column(String(_USERNAME))
    remote_ip: Mapped[str | None] = mapped_column(String(_IP))
    remote_port: Mapped[int | None] = mapped_column(Integer)
    ja3_hash: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(16))
    rule: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(Text)
    # JSON list of the labels that produced the verdict.
    labels: Mapped[str | None] = mapped_column(Text)


class ConsoleSession(Base):
    """A signed-in operator console session; deleting the row ends it (logout, expiry)."""

    __tablename__ = "console_sessions"

    # SHA-256 of the cookie's random token: a copy of the table opens no session.
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float, index=True)


__all__ = [
    "DOVECOT_PROFILE_COLUMNS",
    "FINGERPRINT_FIELDS",
    "FINGERPRINT_KINDS",
    "HELLO_KINDS",
    "LABEL_ACTIONS",
    "NAMING_CONVENTION",
    "AuthFailure",
    "Base",
    "ConsoleSession",
    "Decision",
    "DovecotHash",
    "Fingerprint",
    "Label",
    "Sighting",
    "UserFingerprint",
]
