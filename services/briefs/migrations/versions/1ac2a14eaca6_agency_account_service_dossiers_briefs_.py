"""agency account service: dossiers, briefs, sign-offs, proposals, traffic, estimates, meetings

Revision ID: 1ac2a14eaca6
Revises: 4293944574a6
Create Date: 2026-11-23 01:29:34.852082
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import shared.db

revision: str = "1ac2a14eaca6"
down_revision: str | None = "4293944574a6"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "signoff_rules",
        sa.Column("brief_type", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("roles", sa.JSON(), nullable=False),
        sa.Column("updated_by", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("updated_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("brief_type"),
    )
    op.create_table(
        "timers",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=100), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("due_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=True),
        sa.Column("created_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("fired_at", shared.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("kind", "subject", name="uq_timers_kind_subject"),
    )
    with op.batch_alter_table("timers", schema=None) as batch_op:
        batch_op.create_index(
            "ix_timers_pending_due",
            ["due_at"],
            unique=False,
            postgresql_where=sa.text("fired_at IS NULL"),
            sqlite_where=sa.text("fired_at IS NULL"),
        )

    op.create_table(
        "briefs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("client_id", sa.Uuid(), nullable=False),
        sa.Column("type", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("parent_id", sa.Uuid(), nullable=True),
        sa.Column("title", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("required_roles", sa.JSON(), nullable=False),
        sa.Column("created_by", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("created_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("submitted_at", shared.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("approved_at", shared.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("booked_at", shared.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("booked_by", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("booking_estimate_id", sa.Uuid(), nullable=True),
        sa.Column("execution_started_at", shared.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["clients.id"],
        ),
        sa.ForeignKeyConstraint(
            ["parent_id"],
            ["briefs.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("briefs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_briefs_client_id"), ["client_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_briefs_parent_id"), ["parent_id"], unique=False)

    op.create_table(
        "dossier_sections",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("client_id", sa.Uuid(), nullable=False),
        sa.Column("heading", sqlmodel.sql.sqltypes.AutoString(length=50), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("content", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("updated_by", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("updated_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["clients.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("client_id", "heading", "number", name="uq_dossier_sections_version"),
    )
    with op.batch_alter_table("dossier_sections", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_dossier_sections_client_id"), ["client_id"], unique=False)

    op.create_table(
        "brief_versions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("brief_id", sa.Uuid(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("title", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.Column("digest", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("created_by", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("created_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["brief_id"],
            ["briefs.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("brief_id", "number", name="uq_brief_versions_number"),
    )
    with op.batch_alter_table("brief_versions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_brief_versions_brief_id"), ["brief_id"], unique=False)

    op.create_table(
        "estimates",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("client_id", sa.Uuid(), nullable=False),
        sa.Column("brief_id", sa.Uuid(), nullable=True),
        sa.Column("title", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column("currency", sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
        sa.Column("lines", sa.JSON(), nullable=False),
        sa.Column("total", sa.String(length=40), nullable=False),
        sa.Column("digest", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("tolerance_percent", sa.String(length=40), nullable=False),
        sa.Column("confirmed_number", sa.Integer(), nullable=True),
        sa.Column("confirmed_total", sa.String(length=40), nullable=True),
        sa.Column("sent_at", shared.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("declined_reason", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("created_by", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("created_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["brief_id"],
            ["briefs.id"],
        ),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["clients.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("estimates", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_estimates_brief_id"), ["brief_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_estimates_client_id"), ["client_id"], unique=False)

    op.create_table(
        "meetings",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("client_id", sa.Uuid(), nullable=False),
        sa.Column("brief_id", sa.Uuid(), nullable=True),
        sa.Column("title", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column("held_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("attendees", sa.JSON(), nullable=False),
        sa.Column("summary", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("decisions", sa.JSON(), nullable=False),
        sa.Column("action_items", sa.JSON(), nullable=False),
        sa.Column("report_due_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("issued_by", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("issued_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("deemed_accepted_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("client_response", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=True),
        sa.Column("client_comments", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("responded_at", shared.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["brief_id"],
            ["briefs.id"],
        ),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["clients.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("meetings", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_meetings_client_id"), ["client_id"], unique=False)

    op.create_table(
        "proposals",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("brief_id", sa.Uuid(), nullable=False),
        sa.Column("client_id", sa.Uuid(), nullable=False),
        sa.Column("stage", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("brief_number", sa.Integer(), nullable=False),
        sa.Column("title", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column("summary", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("attachments", sa.JSON(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("presented_by", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("presented_at", shared.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("decision", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=True),
        sa.Column("follow_up", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=True),
        sa.Column("decided_by", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("decided_at", shared.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("comments", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("created_by", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("created_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["brief_id"],
            ["briefs.id"],
        ),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["clients.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("brief_id", "stage", "round", name="uq_proposals_round"),
    )
    with op.batch_alter_table("proposals", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_proposals_brief_id"), ["brief_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_proposals_client_id"), ["client_id"], unique=False)

    op.create_table(
        "signoffs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("brief_id", sa.Uuid(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("role", sqlmodel.sql.sqltypes.AutoString(length=50), nullable=False),
        sa.Column("user", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("decision", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("completes_approval", sa.Boolean(), nullable=False),
        sa.Column("comments", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["brief_id"],
            ["briefs.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("signoffs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_signoffs_at"), ["at"], unique=False)
        batch_op.create_index(batch_op.f("ix_signoffs_brief_id"), ["brief_id"], unique=False)

    op.create_table(
        "actual_costs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("estimate_id", sa.Uuid(), nullable=False),
        sa.Column("client_id", sa.Uuid(), nullable=False),
        sa.Column("description", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.Column("amount", sa.String(length=40), nullable=False),
        sa.Column("incurred_on", sa.Date(), nullable=False),
        sa.Column("reference", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("recorded_by", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("recorded_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["clients.id"],
        ),
        sa.ForeignKeyConstraint(
            ["estimate_id"],
            ["estimates.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("actual_costs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_actual_costs_client_id"), ["client_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_actual_costs_estimate_id"), ["estimate_id"], unique=False)

    op.create_table(
        "estimate_confirmations",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("estimate_id", sa.Uuid(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("digest", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("total", sa.String(length=40), nullable=False),
        sa.Column("confirmed_by", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("confirmed_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("method", sqlmodel.sql.sqltypes.AutoString(length=30), nullable=False),
        sa.Column("evidence_ref", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.Column("recorded_by", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("recorded_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["estimate_id"],
            ["estimates.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("estimate_confirmations", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_estimate_confirmations_estimate_id"), ["estimate_id"], unique=False
        )

    op.create_table(
        "estimate_versions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("estimate_id", sa.Uuid(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("lines", sa.JSON(), nullable=False),
        sa.Column("total", sa.String(length=40), nullable=False),
        sa.Column("digest", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("created_by", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("created_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["estimate_id"],
            ["estimates.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("estimate_id", "number", name="uq_estimate_versions_number"),
    )
    with op.batch_alter_table("estimate_versions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_estimate_versions_estimate_id"), ["estimate_id"], unique=False)

    op.create_table(
        "milestones",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("client_id", sa.Uuid(), nullable=False),
        sa.Column("brief_id", sa.Uuid(), nullable=True),
        sa.Column("proposal_id", sa.Uuid(), nullable=True),
        sa.Column("meeting_id", sa.Uuid(), nullable=True),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=50), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column("owner", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("due_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("delivered_at", shared.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("delivered_by", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("missed_at", shared.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_by", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("created_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["brief_id"],
            ["briefs.id"],
        ),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["clients.id"],
        ),
        sa.ForeignKeyConstraint(
            ["meeting_id"],
            ["meetings.id"],
        ),
        sa.ForeignKeyConstraint(
            ["proposal_id"],
            ["proposals.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("milestones", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_milestones_brief_id"), ["brief_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_milestones_client_id"), ["client_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_milestones_owner"), ["owner"], unique=False)
        batch_op.create_index("ix_milestones_status_due", ["status", "due_at"], unique=False)

    with op.batch_alter_table("clients", schema=None) as batch_op:
        # Existing clients get an empty account team and are active.
        batch_op.add_column(sa.Column("account_team", sa.JSON(), nullable=False, server_default="{}"))
        batch_op.add_column(
            sa.Column(
                "status", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False, server_default="active"
            )
        )
        batch_op.add_column(sa.Column("ended_at", shared.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("ended_reason", sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.drop_column("ended_reason")
        batch_op.drop_column("ended_at")
        batch_op.drop_column("status")
        batch_op.drop_column("account_team")

    with op.batch_alter_table("milestones", schema=None) as batch_op:
        batch_op.drop_index("ix_milestones_status_due")
        batch_op.drop_index(batch_op.f("ix_milestones_owner"))
        batch_op.drop_index(batch_op.f("ix_milestones_client_id"))
        batch_op.drop_index(batch_op.f("ix_milestones_brief_id"))

    op.drop_table("milestones")
    with op.batch_alter_table("estimate_versions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_estimate_versions_estimate_id"))

    op.drop_table("estimate_versions")
    with op.batch_alter_table("estimate_confirmations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_estimate_confirmations_estimate_id"))

    op.drop_table("estimate_confirmations")
    with op.batch_alter_table("actual_costs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_actual_costs_estimate_id"))
        batch_op.drop_index(batch_op.f("ix_actual_costs_client_id"))

    op.drop_table("actual_costs")
    with op.batch_alter_table("signoffs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_signoffs_brief_id"))
        batch_op.drop_index(batch_op.f("ix_signoffs_at"))

    op.drop_table("signoffs")
    with op.batch_alter_table("proposals", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_proposals_client_id"))
        batch_op.drop_index(batch_op.f("ix_proposals_brief_id"))

    op.drop_table("proposals")
    with op.batch_alter_table("meetings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_meetings_client_id"))

    op.drop_table("meetings")
    with op.batch_alter_table("estimates", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_estimates_client_id"))
        batch_op.drop_index(batch_op.f("ix_estimates_brief_id"))

    op.drop_table("estimates")
    with op.batch_alter_table("brief_versions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_brief_versions_brief_id"))

    op.drop_table("brief_versions")
    with op.batch_alter_table("dossier_sections", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dossier_sections_client_id"))

    op.drop_table("dossier_sections")
    with op.batch_alter_table("briefs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_briefs_parent_id"))
        batch_op.drop_index(batch_op.f("ix_briefs_client_id"))

    op.drop_table("briefs")
    with op.batch_alter_table("timers", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_timers_pending_due",
            postgresql_where=sa.text("fired_at IS NULL"),
            sqlite_where=sa.text("fired_at IS NULL"),
        )

    op.drop_table("timers")
    op.drop_table("signoff_rules")
