"""The MCP call log: one row per tool call, never its arguments, answer or error text.

Revision ID: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tool_calls",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("surface", sa.String(20), nullable=False),
        sa.Column("tool", sa.String(100), nullable=False),
        sa.Column("scope", sa.String(100), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "id", name="pk_tool_calls"),
    )
    op.create_index("ix_tool_calls_at", "tool_calls", ["at"])
    op.create_index(
        "ix_tool_calls_tenant_id_surface_at_id", "tool_calls", ["tenant_id", "surface", "at", "id"]
    )


def downgrade() -> None:
    op.drop_table("tool_calls")
