"""Lists filter by ?updated_since=: each table's rows by tenant and time of change.

Revision ID: 0009
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_leads_tenant_id_updated_at", "leads", ["tenant_id", "updated_at"])
    op.create_index("ix_accounts_tenant_id_updated_at", "accounts", ["tenant_id", "updated_at"])
    op.create_index("ix_contacts_tenant_id_updated_at", "contacts", ["tenant_id", "updated_at"])


def downgrade() -> None:
    op.drop_index("ix_leads_tenant_id_updated_at", table_name="leads")
    op.drop_index("ix_accounts_tenant_id_updated_at", table_name="accounts")
    op.drop_index("ix_contacts_tenant_id_updated_at", table_name="contacts")
