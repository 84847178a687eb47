"""Dovecot's hash under every OpenSSL profile: the dovecot_hashes index, sightings' hashes.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03

A Dovecot 2.4 on OpenSSL 3.0 and one on OpenSSL 3.2+ hash the same hello differently. The
index maps either hash to the hello's JA3, JA3N, JA4 and the other profile's hash; the sightings
column lets the connection correlation tell which profile a Dovecot uses.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "dovecot_hashes",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("openssl30", sa.String(length=32), nullable=False),
        sa.Column("openssl32", sa.String(length=32), nullable=False),
        sa.Column("ja3_hash", sa.String(length=32), nullable=False),
        sa.Column("ja3n_hash", sa.String(length=32), nullable=False),
        sa.Column("ja4", sa.String(length=64), nullable=False),
        sa.Column("first_seen", sa.Float(), nullable=False),
        sa.Column("last_seen", sa.Float(), nullable=False),
        sa.Column("times_seen", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dovecot_hashes")),
        sa.UniqueConstraint(
            "openssl30", "openssl32", "ja3_hash", "ja4",
            name=op.f("uq_dovecot_hashes_openssl30_openssl32_ja3_hash_ja4"),
        ),
    )  # fmt: skip
    op.create_index(op.f("ix_dovecot_hashes_openssl32"), "dovecot_hashes", ["openssl32"])
    op.create_index(op.f("ix_dovecot_hashes_last_seen"), "dovecot_hashes", ["last_seen"])
    # batch: SQLite adds a nullable column in place either way; batch keeps one code path.
    with op.batch_alter_table("sightings") as batch:
        batch.add_column(sa.Column("ja3_dovecot_hashes", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sightings") as batch:
        batch.drop_column("ja3_dovecot_hashes")
    op.drop_index(op.f("ix_dovecot_hashes_last_seen"), table_name="dovecot_hashes")
    op.drop_index(op.f("ix_dovecot_hashes_openssl32"), table_name="dovecot_hashes")
    op.drop_table("dovecot_hashes")
