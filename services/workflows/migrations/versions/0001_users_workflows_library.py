"""Users, workflows with their versions, library entries; marketplace search (PostgreSQL full-text
search with a GIN index, SQLite FTS5).

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
        "users",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("plan", sa.String(20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("subject", name="uq_users_subject"),
        sa.CheckConstraint("plan IN ('free', 'pro', 'team', 'enterprise')", name="ck_users_plan"),
    )
    op.create_index("ix_users_email", "users", ["email"])
    op.create_table(
        "workflows",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("visibility", sa.String(10), nullable=False),
        sa.Column("category", sa.String(50), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("current_version", sa.String(32), nullable=False),
        sa.Column("manifest", sa.JSON(), nullable=False),
        sa.Column("forked_from_id", sa.String(40)),
        sa.Column("forked_from_user_id", sa.Uuid()),
        sa.Column("forked_from_version", sa.String(32)),
        sa.Column("featured_at", sa.DateTime(timezone=True)),
        sa.Column("forks", sa.Integer(), nullable=False),
        sa.Column("subscribers", sa.Integer(), nullable=False),
        sa.Column("rating_total", sa.Integer(), nullable=False),
        sa.Column("rating_count", sa.Integer(), nullable=False),
        sa.Column("search_text", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_workflows"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_workflows_user_id_users", ondelete="CASCADE"
        ),
        sa.CheckConstraint("visibility IN ('public', 'private')", name="ck_workflows_visibility"),
    )
    op.create_index("ix_workflows_user_id_created_at_id", "workflows", ["user_id", "created_at", "id"])
    op.create_index("ix_workflows_visibility_created_at_id", "workflows", ["visibility", "created_at", "id"])
    op.create_index(
        "ix_workflows_visibility_category_created_at_id",
        "workflows",
        ["visibility", "category", "created_at", "id"],
    )
    op.create_index(
        "ix_workflows_visibility_subscribers_forks_id",
        "workflows",
        ["visibility", "subscribers", "forks", "id"],
    )
    op.create_index(
        "ix_workflows_visibility_featured_at_id", "workflows", ["visibility", "featured_at", "id"]
    )
    op.create_table(
        "workflow_versions",
        sa.Column("workflow_id", sa.String(40), nullable=False),
        sa.Column("version", sa.String(32), nullable=False),
        sa.Column("manifest", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("workflow_id", "version", name="pk_workflow_versions"),
        sa.ForeignKeyConstraint(
            ["workflow_id"],
            ["workflows.id"],
            name="fk_workflow_versions_workflow_id_workflows",
            ondelete="CASCADE",
        ),
    )
    op.create_table(
        "library_entries",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("workflow_id", sa.String(40), nullable=False),
        sa.Column("source_type", sa.String(12), nullable=False),
        sa.Column("source_user_id", sa.Uuid(), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("enabled_adapters", sa.JSON(), nullable=False),
        sa.Column("auto_update", sa.Boolean(), nullable=False),
        sa.Column("pinned_version", sa.String(32)),
        sa.Column("rating", sa.SmallInteger()),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_library_entries"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_library_entries_user_id_users", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["workflow_id"],
            ["workflows.id"],
            name="fk_library_entries_workflow_id_workflows",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("user_id", "workflow_id", name="uq_library_entries_user_id_workflow_id"),
        sa.CheckConstraint(
            "source_type IN ('owned', 'subscribed', 'forked')", name="ck_library_entries_source_type"
        ),
        sa.CheckConstraint("rating IS NULL OR rating BETWEEN 1 AND 5", name="ck_library_entries_rating"),
    )
    op.create_index(
        "ix_library_entries_user_id_added_at_id", "library_entries", ["user_id", "added_at", "id"]
    )
    op.create_index("ix_library_entries_workflow_id", "library_entries", ["workflow_id"])
    if op.get_bind().dialect.name == "postgresql":
        # Kept by PostgreSQL itself from search_text; searched through the GIN index.
        op.execute(
            "ALTER TABLE workflows ADD COLUMN search_vector tsvector "
            "GENERATED ALWAYS AS (to_tsvector('english', search_text)) STORED"
        )
        op.execute("CREATE INDEX ix_workflows_search_vector ON workflows USING GIN (search_vector)")
    else:
        # Kept by the service beside each public workflow's row (SQLite has no generated tsvector).
        op.execute(
            "CREATE VIRTUAL TABLE workflow_search USING fts5(workflow_id UNINDEXED, body, tokenize='porter')"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        op.execute("DROP TABLE workflow_search")
    op.drop_table("library_entries")
    op.drop_table("workflow_versions")
    op.drop_table("workflows")
    op.drop_table("users")
