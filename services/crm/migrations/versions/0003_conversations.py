"""Conversations and messages.

Revision ID: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "conversations",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("channel_id", sa.Uuid()),
        sa.Column("customer_id", sa.Uuid()),
        sa.Column("assigned_agent_id", sa.Uuid()),
        sa.Column("subject", sa.String(300)),
        sa.Column("intent", sa.String(50)),
        sa.Column("sentiment", sa.String(20)),
        sa.Column("language", sa.String(20)),
        sa.Column("summary", sa.Text()),
        sa.Column("resolved_at", sa.DateTime(timezone=True)),
        sa.Column("resolution_seconds", sa.Integer()),
        sa.Column("handoff_at", sa.DateTime(timezone=True)),
        sa.Column("handoff_reason", sa.String(200)),
        sa.Column("csat_requested_at", sa.DateTime(timezone=True)),
        sa.Column("last_message_at", sa.DateTime(timezone=True)),
        sa.Column("message_count", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "id", name="pk_conversations"),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["contacts.id"],
            ondelete="SET NULL",
            name="fk_conversations_customer_id_contacts",
        ),
        sa.CheckConstraint(
            "status IN ('open', 'assigned', 'waiting', 'resolved', 'escalated')",
            name="ck_conversations_status",
        ),
    )
    op.create_index(
        "ix_conversations_tenant_id_updated_at_id", "conversations", ["tenant_id", "updated_at", "id"]
    )
    op.create_index(
        "ix_conversations_tenant_id_status_updated_at", "conversations", ["tenant_id", "status", "updated_at"]
    )
    op.create_index("ix_conversations_tenant_id_customer_id", "conversations", ["tenant_id", "customer_id"])
    op.create_table(
        "messages",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("conversation_id", sa.Uuid(), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "id", name="pk_messages"),
        sa.ForeignKeyConstraint(
            ["tenant_id", "conversation_id"],
            ["conversations.tenant_id", "conversations.id"],
            ondelete="CASCADE",
            name="fk_messages_tenant_id_conversation_id_conversations",
        ),
    )
    op.create_index(
        "ix_messages_tenant_id_conversation_id_created_at",
        "messages",
        ["tenant_id", "conversation_id", "created_at"],
    )


def downgrade() -> None:
    op.drop_table("messages")
    op.drop_table("conversations")
