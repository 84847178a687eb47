"""Scoped reputation: the network and Dovecot's failure type of each failed login.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03

auth_failures gains ``network`` (the remote address's /24 or /56, as CIDR text) and
``fail_type`` (Dovecot 2.4's report attribute: credentials, account, expired, ...), so that the
reputation rules can count failures per network and leave out failures on accounts that do not
exist (ja3svc.policy.engine.reputation_scope). Rows written before this revision keep NULL in
both: they count as failures of an unknown network on an existing account, and leave the
reputation window (an hour by default) soon after the upgrade.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # batch: SQLite adds nullable columns in place either way; batch keeps one code path.
    with op.batch_alter_table("auth_failures") as batch:
        batch.add_column(sa.Column("network", sa.String(length=50), nullable=True))
        batch.add_column(sa.Column("fail_type", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("auth_failures") as batch:
        batch.drop_column("fail_type")
        batch.drop_column("network")
