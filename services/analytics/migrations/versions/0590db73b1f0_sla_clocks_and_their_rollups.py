"""SLA clocks folded from their outcomes, and their counts in the ticket rollups

Revision ID: 0590db73b1f0
Revises: 9b4e6c2d1f70
Create Date: 2026-11-23 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import shared.db
from services.analytics.buckets import Grain
from services.analytics.rollups import GRAINS, _backfill_sql

revision: str = "0590db73b1f0"
down_revision: str | None = "9b4e6c2d1f70"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_CLOCK_COLUMNS = (
    "ticket_id, metric, cycle, outcome, occurred_at, event_id, policy_name, kind, priority, channel, "
    'assignee, "group"'
)


def upgrade() -> None:
    op.create_table(
        "sla_clocks",
        sa.Column("ticket_id", sa.Uuid(), nullable=False),
        sa.Column("metric", sqlmodel.sql.sqltypes.AutoString(length=30), nullable=False),
        sa.Column("cycle", sa.Integer(), nullable=False),
        sa.Column("outcome", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column("occurred_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("event_id", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("policy_name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("priority", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("channel", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("assignee", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("group", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.PrimaryKeyConstraint("ticket_id", "metric", "cycle", name="pk_sla_clocks"),
    )
    op.create_index(op.f("ix_sla_clocks_occurred_at"), "sla_clocks", ["occurred_at"], unique=False)
    # Each clock from the outcomes already recorded, by the rule of sla_clocks.decide.
    binary = '"C"' if op.get_bind().dialect.name == "postgresql" else "BINARY"
    op.execute(
        f"INSERT INTO sla_clocks ({_CLOCK_COLUMNS}) SELECT {_CLOCK_COLUMNS} FROM ("
        f"SELECT {_CLOCK_COLUMNS}, row_number() OVER (PARTITION BY ticket_id, metric, cycle ORDER BY "
        f"CASE WHEN outcome = 'breach' THEN 0 ELSE 1 END, occurred_at, event_id COLLATE {binary}) AS rank "
        "FROM sla_events WHERE outcome IN ('met', 'breach')) AS ranked WHERE rank = 1"
    )
    with op.batch_alter_table("ticket_rollups") as batch:
        batch.alter_column(
            "side",
            existing_type=sqlmodel.sql.sqltypes.AutoString(length=10),
            type_=sqlmodel.sql.sqltypes.AutoString(length=20),
            existing_nullable=False,
        )
        batch.add_column(sa.Column("met", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("breached", sa.Integer(), nullable=False, server_default="0"))
    if op.get_bind().dialect.name != "postgresql":
        return  # the embedded mode keeps no rollups
    # Every zone marked built is rebuilt from the facts and the clocks, so its reports stay on rollups.
    zones = op.get_bind().execute(sa.text("SELECT zone FROM ticket_rollup_zones")).scalars().all()
    for zone in zones:
        op.execute(sa.text("DELETE FROM ticket_rollups WHERE zone = :zone").bindparams(zone=zone))
        for grain in GRAINS:
            op.execute(_backfill_sql(Grain(grain)).bindparams(zone=zone))


def downgrade() -> None:
    op.execute("DELETE FROM ticket_rollups WHERE side LIKE 'sla:%'")
    with op.batch_alter_table("ticket_rollups") as batch:
        batch.drop_column("breached")
        batch.drop_column("met")
        batch.alter_column(
            "side",
            existing_type=sqlmodel.sql.sqltypes.AutoString(length=20),
            type_=sqlmodel.sql.sqltypes.AutoString(length=10),
            existing_nullable=False,
        )
    op.drop_index(op.f("ix_sla_clocks_occurred_at"), table_name="sla_clocks")
    op.drop_table("sla_clocks")
