"""Lists filter by ?updated_since=: each table's rows by tenant and time of change.

Revision ID: 0005
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_sites_tenant_id_updated_at", "sites", ["tenant_id", "updated_at"])


def downgrade() -> None:
    op.drop_index("ix_sites_tenant_id_updated_at", table_name="sites")
