"""Leads.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "leads",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("email", sa.String(320)),
        sa.Column("name", sa.String(200)),
        sa.Column("phone", sa.String(50)),
        sa.Column("company", sa.String(200)),
        sa.Column("source", sa.String(100)),
        sa.Column("source_bot_id", sa.Uuid()),
        sa.Column("source_conversation_id", sa.Uuid()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "id", name="pk_leads"),
    )
    op.create_index("ix_leads_tenant_id_created_at_id", "leads", ["tenant_id", "created_at", "id"])


def downgrade() -> None:
    op.drop_table("leads")
