"""Lists filter by ?updated_since=: each table's rows by tenant and time of change.

Revision ID: 0005
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_instances_tenant_id_updated_at", "instances", ["tenant_id", "updated_at"])
    op.create_index("ix_channels_tenant_id_updated_at", "channels", ["tenant_id", "updated_at"])


def downgrade() -> None:
    op.drop_index("ix_instances_tenant_id_updated_at", table_name="instances")
    op.drop_index("ix_channels_tenant_id_updated_at", table_name="channels")
