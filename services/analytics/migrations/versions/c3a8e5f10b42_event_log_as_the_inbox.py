"""The event log is the consumer's inbox; its type and time indexes, never read, are dropped

Revision ID: c3a8e5f10b42
Revises: 0590db73b1f0
Create Date: 2026-11-23 15:40:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "c3a8e5f10b42"
down_revision: str | None = "0590db73b1f0"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Events handled before this revision are in both the inbox and the log, so the log alone still
    # recognises every one of them when redelivered.
    with op.batch_alter_table("event_log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_event_log_type"))
        batch_op.drop_index(batch_op.f("ix_event_log_occurred_at"))


def downgrade() -> None:
    # A consumer of the previous revision claims in the inbox: it must find there what the log holds.
    op.execute(
        "INSERT INTO inbox (event_id, type, source, handled_at) "
        "SELECT event_id, type, source, CURRENT_TIMESTAMP FROM event_log ON CONFLICT (event_id) DO NOTHING"
    )
    with op.batch_alter_table("event_log", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_event_log_occurred_at"), ["occurred_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_event_log_type"), ["type"], unique=False)
