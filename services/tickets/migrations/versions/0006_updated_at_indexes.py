"""Lists filter by ?updated_since=: each table's rows by tenant and time of change.

Revision ID: 0006
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_tickets_tenant_id_updated_at", "tickets", ["tenant_id", "updated_at"])


def downgrade() -> None:
    op.drop_index("ix_tickets_tenant_id_updated_at", table_name="tickets")
