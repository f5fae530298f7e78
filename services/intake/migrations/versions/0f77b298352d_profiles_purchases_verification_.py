"""profiles, purchases, verification, classification rules, audit log

Revision ID: 0f77b298352d
Revises: 1ad470d76b11
Create Date: 2026-11-23 01:25:00.607545
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import shared.db

revision: str = "0f77b298352d"
down_revision: str | None = "1ad470d76b11"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "classification_rules",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("target", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column("value", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("keywords", sa.JSON(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "pii_audit_log",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("actor", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("roles", sa.JSON(), nullable=False),
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("action", sqlmodel.sql.sqltypes.AutoString(length=50), nullable=False),
        sa.Column("correlation_id", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("pii_audit_log", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_pii_audit_log_actor"), ["actor"], unique=False)
        batch_op.create_index(batch_op.f("ix_pii_audit_log_at"), ["at"], unique=False)
        batch_op.create_index(batch_op.f("ix_pii_audit_log_customer_id"), ["customer_id"], unique=False)

    op.create_table(
        "customer_tags",
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("tag", sqlmodel.sql.sqltypes.AutoString(length=50), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
        ),
        sa.PrimaryKeyConstraint("customer_id", "tag"),
    )
    with op.batch_alter_table("customer_tags", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_customer_tags_tag"), ["tag"], unique=False)

    op.create_table(
        "purchases",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("product", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("model", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("serial", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("purchased_at", sa.Date(), nullable=False),
        sa.Column("warranty_months", sa.Integer(), nullable=False),
        sa.Column("warranty_until", sa.Date(), nullable=False),
        sa.Column("order_id", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
        sa.Column("created_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("order_id", "serial", name="uq_purchases_order_serial"),
    )
    with op.batch_alter_table("purchases", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_purchases_customer_id"), ["customer_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_purchases_order_id"), ["order_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_purchases_serial"), ["serial"], unique=False)

    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("attachments", sa.JSON(), nullable=False, server_default="[]"))
        batch_op.add_column(
            sa.Column(
                "verification_method",
                sqlmodel.sql.sqltypes.AutoString(length=20),
                nullable=False,
                server_default="none",
            )
        )
        batch_op.add_column(sa.Column("verified", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(
            sa.Column("verification_note", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True)
        )
        batch_op.add_column(sa.Column("purchase_id", sa.Uuid(), nullable=True))
        batch_op.add_column(
            sa.Column("external_id", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True)
        )
        batch_op.create_index("ix_contacts_customer_received", ["customer_id", "received_at"], unique=False)
        batch_op.create_unique_constraint("uq_contacts_external_id", ["external_id"])
        batch_op.create_foreign_key("fk_contacts_purchase_id", "purchases", ["purchase_id"], ["id"])

    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("company", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True))
        batch_op.add_column(sa.Column("addresses", sa.JSON(), nullable=False, server_default="[]"))
        batch_op.add_column(sa.Column("preferences", sa.JSON(), nullable=False, server_default="{}"))
        batch_op.add_column(
            sa.Column("notes", sqlmodel.sql.sqltypes.AutoString(), nullable=False, server_default="")
        )
        batch_op.add_column(sa.Column("consent", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("merged_into", sa.Uuid(), nullable=True))
        batch_op.create_index(batch_op.f("ix_customers_display_name"), ["display_name"], unique=False)
        batch_op.create_index(batch_op.f("ix_customers_merged_into"), ["merged_into"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_customers_merged_into"))
        batch_op.drop_index(batch_op.f("ix_customers_display_name"))
        batch_op.drop_column("merged_into")
        batch_op.drop_column("consent")
        batch_op.drop_column("notes")
        batch_op.drop_column("preferences")
        batch_op.drop_column("addresses")
        batch_op.drop_column("company")

    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.drop_constraint("fk_contacts_purchase_id", type_="foreignkey")
        batch_op.drop_constraint("uq_contacts_external_id", type_="unique")
        batch_op.drop_index("ix_contacts_customer_received")
        batch_op.drop_column("external_id")
        batch_op.drop_column("purchase_id")
        batch_op.drop_column("verification_note")
        batch_op.drop_column("verified")
        batch_op.drop_column("verification_method")
        batch_op.drop_column("attachments")

    with op.batch_alter_table("purchases", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_purchases_serial"))
        batch_op.drop_index(batch_op.f("ix_purchases_order_id"))
        batch_op.drop_index(batch_op.f("ix_purchases_customer_id"))

    op.drop_table("purchases")
    with op.batch_alter_table("customer_tags", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_customer_tags_tag"))

    op.drop_table("customer_tags")
    with op.batch_alter_table("pii_audit_log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pii_audit_log_customer_id"))
        batch_op.drop_index(batch_op.f("ix_pii_audit_log_at"))
        batch_op.drop_index(batch_op.f("ix_pii_audit_log_actor"))

    op.drop_table("pii_audit_log")
    op.drop_table("classification_rules")
