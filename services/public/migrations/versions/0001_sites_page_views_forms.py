"""Sites, page views, form submissions, audit log, outbox, processed events.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _site_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["tenant_id", "site_id"],
        ["sites.tenant_id", "sites.id"],
        name=f"fk_{table}_tenant_id_site_id_sites",
        ondelete="CASCADE",
    )


def upgrade() -> None:
    op.create_table(
        "sites",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("domain", sa.String(253)),
        sa.Column("tracking_token", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "id", name="pk_sites"),
        sa.UniqueConstraint("id", name="uq_sites_id"),
        sa.UniqueConstraint("tracking_token", name="uq_sites_tracking_token"),
    )
    op.create_index("ix_sites_tenant_id_created_at_id", "sites", ["tenant_id", "created_at", "id"])
    op.create_table(
        "page_views",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("site_id", sa.Uuid(), nullable=False),
        sa.Column("page_path", sa.String(2048), nullable=False),
        sa.Column("device_type", sa.String(50)),
        sa.Column("referrer", sa.String(2048)),
        sa.Column("screen_width", sa.Integer()),
        sa.Column("session_id", sa.String(200)),
        sa.Column("viewed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "id", name="pk_page_views"),
        _site_fk("page_views"),
    )
    op.create_index(
        "ix_page_views_tenant_id_site_id_viewed_at", "page_views", ["tenant_id", "site_id", "viewed_at"]
    )
    op.create_table(
        "form_submissions",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("site_id", sa.Uuid(), nullable=False),
        sa.Column("form_data", sa.JSON(), nullable=False),
        sa.Column("email", sa.String(320)),
        sa.Column("page_slug", sa.String(200)),
        sa.Column("lead_id", sa.Uuid()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "id", name="pk_form_submissions"),
        _site_fk("form_submissions"),
    )
    op.create_index(
        "ix_form_submissions_tenant_id_site_id_created_at_id",
        "form_submissions",
        ["tenant_id", "site_id", "created_at", "id"],
    )
    op.create_table(
        "audit_log",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("resource", sa.String(50), nullable=False),
        sa.Column("resource_id", sa.Uuid(), nullable=False),
        sa.Column("action", sa.String(20), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "id", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_tenant_id_at", "audit_log", ["tenant_id", "at"])
    op.create_table(
        "outbox",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("topic", sa.String(100), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("dispatched_at", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("tenant_id", "id", name="pk_outbox"),
    )
    op.create_index("ix_outbox_dispatched_at_created_at", "outbox", ["dispatched_at", "created_at"])
    op.create_table(
        "processed_events",
        sa.Column("consumer", sa.String(100), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("consumer", "event_id", name="pk_processed_events"),
    )


def downgrade() -> None:
    for table in ("processed_events", "outbox", "audit_log", "form_submissions", "page_views", "sites"):
        op.drop_table(table)
