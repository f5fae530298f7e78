"""Milestones delivered and missed, confirmed estimates and actual costs

Revision ID: 60d111223dbc
Revises: c3a8e5f10b42
Create Date: 2026-11-23 19:54:50.293628
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import shared.db

revision: str = "60d111223dbc"
down_revision: str | None = "c3a8e5f10b42"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "cost_facts",
        sa.Column("cost_id", sa.Uuid(), nullable=False),
        sa.Column("estimate_id", sa.Uuid(), nullable=False),
        sa.Column("client_id", sa.Uuid(), nullable=False),
        sa.Column("currency", sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
        sa.Column("amount", shared.db.DecimalText(length=40), nullable=False),
        sa.Column("incurred_on", sa.Date(), nullable=False),
        sa.PrimaryKeyConstraint("cost_id"),
    )
    with op.batch_alter_table("cost_facts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_cost_facts_estimate_id"), ["estimate_id"], unique=False)

    op.create_table(
        "estimate_facts",
        sa.Column("estimate_id", sa.Uuid(), nullable=False),
        sa.Column("client_id", sa.Uuid(), nullable=False),
        sa.Column("currency", sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
        sa.Column("confirmed_version", sa.Integer(), nullable=False),
        sa.Column("confirmed_total", shared.db.DecimalText(length=40), nullable=False),
        sa.Column("confirmed_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("estimate_id"),
    )
    with op.batch_alter_table("estimate_facts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_estimate_facts_client_id"), ["client_id"], unique=False)

    # A row was a missed milestone; it now also records the delivery, so the miss time may be empty.
    with op.batch_alter_table("milestone_facts", schema=None) as batch_op:
        batch_op.alter_column("detected_at", new_column_name="missed_at", nullable=True)
        batch_op.add_column(sa.Column("delivered_at", shared.db.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    # The previous revision kept missed milestones only.
    op.execute("DELETE FROM milestone_facts WHERE missed_at IS NULL")
    with op.batch_alter_table("milestone_facts", schema=None) as batch_op:
        batch_op.drop_column("delivered_at")
        batch_op.alter_column("missed_at", new_column_name="detected_at", nullable=False)

    with op.batch_alter_table("estimate_facts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_estimate_facts_client_id"))

    op.drop_table("estimate_facts")
    with op.batch_alter_table("cost_facts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cost_facts_estimate_id"))

    op.drop_table("cost_facts")
