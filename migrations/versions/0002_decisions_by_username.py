"""Index the audit log by account: decisions (username, id).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01

GET /api/v1/decisions?username= reads an account's newest decisions; without this index that is
a scan of every decision kept (90 days by default, three rows per login).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(op.f("ix_decisions_username_id"), "decisions", ["username", "id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_decisions_username_id"), table_name="decisions")
