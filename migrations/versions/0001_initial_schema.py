"""Initial schema: fingerprints, sightings, labels and the policy service's tables.

Revision ID: 0001
Revises:
Create Date: 2026-11-25

Written out in full (not importing ja3svc.store.models) so that this revision keeps describing the
schema as it was when later model changes arrive with their own revisions.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# 64-bit ids on PostgreSQL; SQLite only auto-increments an INTEGER PRIMARY KEY.
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
KINDS = "kind IN ('ja3', 'ja3n', 'ja4', 'ja3s', 'ja3_dovecot')"


def _id() -> sa.Column:
    return sa.Column("id", BIG_ID, nullable=False)


def upgrade() -> None:
    op.create_table(
        "fingerprints",
        _id(),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("value", sa.String(length=64), nullable=False),
        sa.Column("full_string", sa.Text(), nullable=True),
        sa.Column("first_seen", sa.Float(), nullable=False),
        sa.Column("last_seen", sa.Float(), nullable=False),
        sa.Column("times_seen", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(KINDS, name=op.f("ck_fingerprints_kind")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fingerprints")),
        sa.UniqueConstraint("kind", "value", name=op.f("uq_fingerprints_kind_value")),
    )
    op.create_index(
        op.f("ix_fingerprints_kind_times_seen"), "fingerprints", ["kind", "times_seen"]
    )

    op.create_table(
        "sightings",
        _id(),
        sa.Column("ts", sa.Float(), nullable=False),
        sa.Column("sensor", sa.String(length=200), nullable=False),
        sa.Column("src", sa.String(length=45), nullable=False),
        sa.Column("sport", sa.Integer(), nullable=False),
        sa.Column("dst", sa.String(length=45), nullable=False),
        sa.Column("dport", sa.Integer(), nullable=False),
        sa.Column("transport", sa.String(length=8), nullable=False),
        sa.Column("hello", sa.String(length=8), nullable=False),
        sa.Column("hello_index", sa.SmallInteger(), nullable=False),
        sa.Column("sni", sa.String(length=255), nullable=True),
        sa.Column("alpn", sa.Text(), nullable=True),
        sa.Column("tls_version", sa.String(length=16), nullable=True),
        sa.Column("ja3_hash", sa.String(length=32), nullable=True),
        sa.Column("ja3n_hash", sa.String(length=32), nullable=True),
        sa.Column("ja4", sa.String(length=64), nullable=True),
        sa.Column("ja3_dovecot_hash", sa.String(length=32), nullable=True),
        sa.Column("ja3s_hash", sa.String(length=32), nullable=True),
        sa.CheckConstraint("hello IN ('client', 'server')", name=op.f("ck_sightings_hello")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sightings")),
        sa.UniqueConstraint(
            "sensor", "ts", "src", "sport", "dst", "dport", "hello", "hello_index",
            name=op.f("uq_sightings_sensor_ts_src_sport_dst_dport_hello_hello_index"),
        ),
    )
    op.create_index(op.f("ix_sightings_src_sport_ts"), "sightings", ["src", "sport", "ts"])
    op.create_index(op.f("ix_sightings_ts"), "sightings", ["ts"])
    op.create_index(op.f("ix_sightings_ja3_hash"), "sightings", ["ja3_hash"])

    op.create_table(
        "labels",
        _id(),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("value", sa.String(length=64), nullable=False),
        sa.Column("client_name", sa.String(length=200), nullable=True),
        sa.Column("category", sa.String(length=32), nullable=True),
        sa.Column("action", sa.String(length=8), nullable=False),
        sa.Column("tarpit_seconds", sa.Integer(), nullable=True),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("confidence", sa.SmallInteger(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.CheckConstraint(KINDS, name=op.f("ck_labels_kind")),
        sa.CheckConstraint(
            "action IN ('allow', 'deny', 'tarpit', 'none')", name=op.f("ck_labels_action")
        ),
        sa.CheckConstraint("confidence BETWEEN 0 AND 100", name=op.f("ck_labels_confidence")),
        sa.CheckConstraint(
            "tarpit_seconds IS NULL OR tarpit_seconds >= 0",
            name=op.f("ck_labels_tarpit_seconds"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_labels")),
        sa.UniqueConstraint(
            "kind", "value", "source", name=op.f("uq_labels_kind_value_source")
        ),
    )

    op.create_table(
        "user_fingerprints",
        _id(),
        sa.Column("username", sa.String(length=320), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("value", sa.String(length=64), nullable=False),
        sa.Column("first_seen", sa.Float(), nullable=False),
        sa.Column("last_seen", sa.Float(), nullable=False),
        sa.Column("successes", sa.Integer(), nullable=False),
        sa.CheckConstraint(KINDS, name=op.f("ck_user_fingerprints_kind")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_fingerprints")),
        sa.UniqueConstraint(
            "username", "kind", "value", name=op.f("uq_user_fingerprints_username_kind_value")
        ),
    )

    op.create_table(
        "auth_failures",
        _id(),
        sa.Column("ts", sa.Float(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("value", sa.String(length=64), nullable=False),
        sa.Column("username", sa.String(length=320), nullable=False),
        sa.CheckConstraint(KINDS, name=op.f("ck_auth_failures_kind")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auth_failures")),
    )
    op.create_index(
        op.f("ix_auth_failures_kind_value_ts"), "auth_failures", ["kind", "value", "ts"]
    )
    op.create_index(op.f("ix_auth_failures_ts"), "auth_failures", ["ts"])

    op.create_table(
        "decisions",
        _id(),
        sa.Column("ts", sa.Float(), nullable=False),
        sa.Column("command", sa.String(length=16), nullable=False),
        sa.Column("username", sa.String(length=320), nullable=True),
        sa.Column("remote_ip", sa.String(length=45), nullable=True),
        sa.Column("remote_port", sa.Integer(), nullable=True),
        sa.Column("ja3_hash", sa.String(length=32), nullable=True),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("rule", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("labels", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_decisions")),
    )
    op.create_index(op.f("ix_decisions_ts"), "decisions", ["ts"])


def downgrade() -> None:
    # Dropping a table drops its indexes and constraints on both dialects.
    for table in (
        "decisions",
        "auth_failures",
        "user_fingerprints",
        "labels",
        "sightings",
        "fingerprints",
    ):
        op.drop_table(table)
