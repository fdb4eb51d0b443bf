"""Accounts, contacts, lifecycle events, audit log, outbox.

Revision ID: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _stamps() -> list[sa.Column]:
    return [
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("domain", sa.String(255)),
        sa.Column("industry", sa.String(100)),
        sa.Column("website", sa.String(2048)),
        sa.Column("phone", sa.String(50)),
        sa.Column("address", sa.String(1000)),
        sa.Column("notes", sa.Text()),
        sa.Column("lifecycle_stage", sa.String(20), nullable=False),
        sa.Column("health_score", sa.Integer()),
        sa.Column("renewal_date", sa.Date()),
        sa.Column("renewal_status", sa.String(20)),
        sa.Column("mrr_cents", sa.BigInteger()),
        *_stamps(),
        sa.PrimaryKeyConstraint("tenant_id", "id", name="pk_accounts"),
        sa.CheckConstraint(
            "lifecycle_stage IN ('prospect', 'active', 'at_risk', 'churned')",
            name="ck_accounts_lifecycle_stage",
        ),
        sa.CheckConstraint(
            "renewal_status IN ('upcoming', 'at_risk', 'renewed', 'churned')",
            name="ck_accounts_renewal_status",
        ),
        sa.CheckConstraint("health_score BETWEEN 0 AND 100", name="ck_accounts_health_score"),
    )
    op.create_index("ix_accounts_tenant_id_created_at_id", "accounts", ["tenant_id", "created_at", "id"])
    op.create_index(
        "ix_accounts_tenant_id_lifecycle_stage_created_at",
        "accounts",
        ["tenant_id", "lifecycle_stage", "created_at"],
    )
    op.create_table(
        "contacts",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("name", sa.String(200)),
        sa.Column("phone", sa.String(50)),
        sa.Column("company", sa.String(200)),
        sa.Column("source", sa.String(100)),
        sa.Column("source_bot_id", sa.Uuid()),
        sa.Column("source_conversation_id", sa.Uuid()),
        *_stamps(),
        sa.PrimaryKeyConstraint("tenant_id", "id", name="pk_contacts"),
        sa.ForeignKeyConstraint(
            ["tenant_id", "account_id"],
            ["accounts.tenant_id", "accounts.id"],
            name="fk_contacts_tenant_id_account_id_accounts",
        ),
        sa.CheckConstraint("account_id IS NOT NULL", name="ck_contacts_customers_contact_requires_account"),
        sa.UniqueConstraint("id", name="uq_contacts_id"),
    )
    op.create_index("ix_contacts_tenant_id_created_at_id", "contacts", ["tenant_id", "created_at", "id"])
    op.create_index(
        "ix_contacts_tenant_id_account_id_created_at", "contacts", ["tenant_id", "account_id", "created_at"]
    )
    op.create_table(
        "lifecycle_events",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid()),
        sa.Column("lead_id", sa.Uuid()),
        sa.Column("from_stage", sa.String(20)),
        sa.Column("to_stage", sa.String(20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "id", name="pk_lifecycle_events"),
        sa.ForeignKeyConstraint(
            ["tenant_id", "account_id"],
            ["accounts.tenant_id", "accounts.id"],
            ondelete="CASCADE",
            name="fk_lifecycle_events_tenant_id_account_id_accounts",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "lead_id"],
            ["leads.tenant_id", "leads.id"],
            ondelete="CASCADE",
            name="fk_lifecycle_events_tenant_id_lead_id_leads",
        ),
    )
    op.create_index(
        "ix_lifecycle_events_tenant_id_account_id_created_at",
        "lifecycle_events",
        ["tenant_id", "account_id", "created_at"],
    )
    op.create_index(
        "ix_lifecycle_events_tenant_id_lead_id_created_at",
        "lifecycle_events",
        ["tenant_id", "lead_id", "created_at"],
    )
    op.create_table(
        "audit_log",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("resource", sa.String(50), nullable=False),
        sa.Column("resource_id", sa.Uuid(), nullable=False),
        sa.Column("action", sa.String(20), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "id", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_tenant_id_at", "audit_log", ["tenant_id", "at"])
    op.create_table(
        "outbox",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("topic", sa.String(100), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("dispatched_at", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("tenant_id", "id", name="pk_outbox"),
    )
    op.create_index("ix_outbox_dispatched_at_created_at", "outbox", ["dispatched_at", "created_at"])


def downgrade() -> None:
    for table in ("outbox", "audit_log", "lifecycle_events", "contacts", "accounts"):
        op.drop_table(table)
