"""rollups of the headline ticket report per reporting zone, grain, bucket, kind and channel

Revision ID: 9b4e6c2d1f70
Revises: 7d3f2a91c4e8
Create Date: 2026-11-23 07:00:00.000000
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy.dialects import postgresql

import shared.db
from services.analytics.rollups import rollup_zones

revision: str = "9b4e6c2d1f70"
down_revision: str | None = "7d3f2a91c4e8"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _bins() -> sa.types.TypeEngine[dict[str, int]]:
    return postgresql.JSONB().with_variant(sa.JSON(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "ticket_rollups",
        sa.Column("zone", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("grain", sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("channel", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("bucket", sa.Date(), nullable=False),
        sa.Column("side", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("done", sa.Integer(), nullable=False),
        sa.Column("reopened", sa.Integer(), nullable=False),
        sa.Column("one_touch", sa.Integer(), nullable=False),
        sa.Column("touched", sa.Integer(), nullable=False),
        sa.Column("calendar_bins", _bins(), nullable=False),
        sa.Column("business_bins", _bins(), nullable=False),
        sa.PrimaryKeyConstraint(
            "zone", "grain", "kind", "channel", "bucket", "side", name="pk_ticket_rollups"
        ),
    )
    op.create_table(
        "ticket_rollup_zones",
        sa.Column("zone", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("built_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("zone"),
    )
    if op.get_bind().dialect.name != "postgresql":
        return  # the embedded mode's report folds rows in Python and keeps no rollups
    # The configured zones are built from the facts already there by revision 0590db73b1f0, once the
    # rows have all their columns (that revision rebuilds every zone marked here).
    for zone in rollup_zones():
        op.execute(
            sa.text("INSERT INTO ticket_rollup_zones (zone, built_at) VALUES (:zone, :at)").bindparams(
                zone=zone, at=datetime.now(UTC)
            )
        )


def downgrade() -> None:
    op.drop_table("ticket_rollup_zones")
    op.drop_table("ticket_rollups")
