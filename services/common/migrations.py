"""Alembic per service: each keeps its own version table, in its own schema on PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from alembic import command, context
from alembic.config import Config
from sqlalchemy import Connection, MetaData, create_engine, text

from services.common.db import connect_args, migration_url


def upgrade(*, migrations_dir: Path, url: str, schema: str) -> None:
    """Brings a service's database to the newest revision."""
    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    config.attributes["url"] = url
    config.attributes["schema"] = schema
    command.upgrade(config, "head")


def _schema_exists(connection: Connection, schema: str) -> bool:
    found = connection.execute(text("SELECT 1 FROM pg_namespace WHERE nspname = :schema"), {"schema": schema})
    return found.first() is not None


def run_env(metadata: MetaData) -> None:
    """The body of every service's migrations/env.py (online mode only)."""
    config = context.config
    schema = config.attributes["schema"]
    url = migration_url(config.attributes["url"])
    engine = create_engine(url, connect_args=connect_args(url, schema), hide_parameters=True)
    with engine.connect() as connection:
        if url.get_backend_name() == "postgresql":
            # Only when missing: CREATE SCHEMA IF NOT EXISTS needs CREATE on the database even when the
            # schema exists, which a service's own role (owner of its schema only) does not have.
            if not _schema_exists(connection, schema):
                connection.execute(text(f'CREATE SCHEMA "{schema}"'))
            connection.commit()  # Alembic commits only a transaction it began itself
        context.configure(
            connection=connection,
            target_metadata=metadata,
            version_table=f"alembic_version_{schema}",
            render_as_batch=url.get_backend_name() == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()
