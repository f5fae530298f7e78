"""partial index for the open-tickets gauge

Revision ID: 5c1e0a9d7b21
Revises: eb91556df642
Create Date: 2026-11-23 03:50:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5c1e0a9d7b21"
down_revision: str | None = "eb91556df642"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OPEN = "status NOT IN ('resolved', 'closed')"


def upgrade() -> None:
    with op.batch_alter_table("ticket_facts", schema=None) as batch_op:
        batch_op.create_index(
            "ix_ticket_facts_open_status",
            ["status"],
            unique=False,
            postgresql_where=sa.text(_OPEN),
            sqlite_where=sa.text(_OPEN),
        )


def downgrade() -> None:
    with op.batch_alter_table("ticket_facts", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_ticket_facts_open_status", postgresql_where=sa.text(_OPEN), sqlite_where=sa.text(_OPEN)
        )
