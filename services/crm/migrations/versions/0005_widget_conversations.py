"""Conversations opened by an instance's widget, and leads found by email.

Revision ID: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("conversations", sa.Column("instance_id", sa.Uuid()))
    op.create_index("ix_conversations_tenant_id_instance_id", "conversations", ["tenant_id", "instance_id"])
    op.create_index("ix_leads_tenant_id_email_lower", "leads", ["tenant_id", sa.text("lower(email)")])


def downgrade() -> None:
    op.drop_index("ix_leads_tenant_id_email_lower", "leads")
    op.drop_index("ix_conversations_tenant_id_instance_id", "conversations")
    op.drop_column("conversations", "instance_id")
