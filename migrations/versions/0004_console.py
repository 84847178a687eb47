"""Operator console: its sessions, and the indexes its pages read through.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03

console_sessions holds one row per signed-in browser (the SHA-256 of the cookie's token), so
logging out ends a session on every worker. The indexes keep each console page a bounded read
at a million decisions and a million labels: decisions by fingerprint, fingerprints by first
sighting, labels by source, by action (both newest first) and by value prefix, and the
accounts of one fingerprint.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = (
    ("ix_decisions_ja3_hash_id", "decisions", ["ja3_hash", "id"]),
    ("ix_fingerprints_first_seen", "fingerprints", ["first_seen"]),
    ("ix_labels_source_id", "labels", ["source", "id"]),
    ("ix_labels_action_id", "labels", ["action", "id"]),
    ("ix_labels_value", "labels", ["value"]),
    ("ix_user_fingerprints_kind_value", "user_fingerprints", ["kind", "value"]),
)


def upgrade() -> None:
    op.create_table(
        "console_sessions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_console_sessions")),
    )
    op.create_index(
        op.f("ix_console_sessions_expires_at"), "console_sessions", ["expires_at"]
    )
    for name, table, columns in INDEXES:
        op.create_index(op.f(name), table, columns)


def downgrade() -> None:
    for name, table, _ in reversed(INDEXES):
        op.drop_index(op.f(name), table_name=table)
    op.drop_index(op.f("ix_console_sessions_expires_at"), table_name="console_sessions")
    op.drop_table("console_sessions")
