"""DDSketch bins of the four durations on ticket_facts, and covering indexes for the headline report

Revision ID: 7d3f2a91c4e8
Revises: 5c1e0a9d7b21
Create Date: 2026-11-23 04:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from services.analytics.statistics import bin_sql

revision: str = "7d3f2a91c4e8"
down_revision: str | None = "5c1e0a9d7b21"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_DURATIONS = {
    "first_response_bin": "first_response_seconds",
    "first_response_business_bin": "first_response_business_seconds",
    "resolution_bin": "resolution_seconds",
    "resolution_business_bin": "resolution_business_seconds",
}
_OLD_INCLUDE = {
    "ix_ticket_facts_kind_channel_created": [
        "assignee",
        "group",
        "category",
        "first_response_seconds",
        "first_response_business_seconds",
    ],
    "ix_ticket_facts_kind_channel_resolved": [
        "status",
        "assignee",
        "group",
        "reopen_count",
        "public_replies",
        "resolution_seconds",
        "resolution_business_seconds",
    ],
}
_NEW_INCLUDE = {
    "ix_ticket_facts_kind_channel_created": [
        "first_response_bin",
        "first_response_business_bin",
        "assignee",
        "group",
        "category",
    ],
    "ix_ticket_facts_kind_channel_resolved": [
        "status",
        "reopen_count",
        "public_replies",
        "resolution_bin",
        "resolution_business_bin",
        "assignee",
        "group",
    ],
}
_KEYS = {
    "ix_ticket_facts_kind_channel_created": ["kind", "channel", "created_at"],
    "ix_ticket_facts_kind_channel_resolved": ["kind", "channel", "resolved_at"],
}


def upgrade() -> None:
    # PostgreSQL only has stored generated columns (filled for every existing row here); SQLite cannot
    # add a stored one to an existing table, and its report folds the durations in Python anyway.
    stored = op.get_bind().dialect.name == "postgresql"
    with op.batch_alter_table("ticket_facts", schema=None) as batch_op:
        for name, duration in _DURATIONS.items():
            batch_op.add_column(
                sa.Column(name, sa.Integer(), sa.Computed(bin_sql(duration), persisted=stored or None))
            )
    with op.batch_alter_table("ticket_facts", schema=None) as batch_op:
        for index, include in _OLD_INCLUDE.items():
            batch_op.drop_index(index, postgresql_include=include)
        for index, include in _NEW_INCLUDE.items():
            batch_op.create_index(index, _KEYS[index], unique=False, postgresql_include=include)


def downgrade() -> None:
    with op.batch_alter_table("ticket_facts", schema=None) as batch_op:
        for index, include in _NEW_INCLUDE.items():
            batch_op.drop_index(index, postgresql_include=include)
        for index, include in _OLD_INCLUDE.items():
            batch_op.create_index(index, _KEYS[index], unique=False, postgresql_include=include)
    with op.batch_alter_table("ticket_facts", schema=None) as batch_op:
        for name in _DURATIONS:
            batch_op.drop_column(name)
