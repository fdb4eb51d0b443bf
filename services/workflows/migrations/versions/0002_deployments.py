"""Deployments, the workflows they serve, their keys, and the connections to their endpoints.

Revision ID: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "deployments",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("description", sa.Text()),
        sa.Column("enabled_adapters", sa.JSON(), nullable=False),
        sa.Column("allow_anonymous", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_deployments"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_deployments_user_id_users", ondelete="CASCADE"
        ),
        sa.CheckConstraint("status IN ('active', 'inactive')", name="ck_deployments_status"),
    )
    op.create_index("ix_deployments_user_id_created_at_id", "deployments", ["user_id", "created_at", "id"])
    op.create_table(
        "deployment_workflows",
        sa.Column("deployment_id", sa.String(40), nullable=False),
        sa.Column("workflow_id", sa.String(40), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("deployment_id", "workflow_id", name="pk_deployment_workflows"),
        sa.ForeignKeyConstraint(
            ["deployment_id"],
            ["deployments.id"],
            name="fk_deployment_workflows_deployment_id_deployments",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workflow_id"],
            ["workflows.id"],
            name="fk_deployment_workflows_workflow_id_workflows",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_deployment_workflows_workflow_id", "deployment_workflows", ["workflow_id"])
    op.create_table(
        "deployment_keys",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("deployment_id", sa.String(40), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_deployment_keys"),
        sa.ForeignKeyConstraint(
            ["deployment_id"],
            ["deployments.id"],
            name="fk_deployment_keys_deployment_id_deployments",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("digest", name="uq_deployment_keys_digest"),
    )
    op.create_index("ix_deployment_keys_deployment_id", "deployment_keys", ["deployment_id"])
    op.create_table(
        "deployment_connections",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("deployment_id", sa.String(40), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("adapter", sa.String(10), nullable=False),
        sa.Column("connected_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_deployment_connections"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_deployment_connections_user_id_users", ondelete="CASCADE"
        ),
    )
    op.create_index(
        "ix_deployment_connections_deployment_id_connected_at",
        "deployment_connections",
        ["deployment_id", "connected_at"],
    )
    op.create_index(
        "ix_deployment_connections_user_id_connected_at",
        "deployment_connections",
        ["user_id", "connected_at"],
    )


def downgrade() -> None:
    op.drop_table("deployment_connections")
    op.drop_table("deployment_keys")
    op.drop_table("deployment_workflows")
    op.drop_table("deployments")
