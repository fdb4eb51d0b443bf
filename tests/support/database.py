"""Reading (and, to stand for time passing, changing) a service's own tables from a test, on either
backend."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from services.common.config import database_url
from services.common.db import connect_args, migration_url


def service_rows(url: str, service: str, query: str, **params: Any) -> list[Any]:
    """Rows of a statement on `service`'s tables at `url` (its schema on PostgreSQL, its own SQLite
    file), committed; [] for a statement that returns none."""
    url = migration_url(url)
    engine = sa.create_engine(url, connect_args=connect_args(url, service))
    try:
        with engine.begin() as conn:
            result = conn.execute(sa.text(query), params)
            return list(result.all()) if result.returns_rows else []
    finally:
        engine.dispose()


def stack_rows(env: Mapping[str, str], service: str, query: str, **params: Any) -> list[Any]:
    """Rows of a statement on the tables of a running stack's `service`."""
    return service_rows(database_url(env, service), service, query, **params)


def insert_rows(
    env: Mapping[str, str], service: str, table: sa.Table, rows: Sequence[Mapping[str, Any]]
) -> None:
    """Inserts rows into a running stack's `service` table directly (many at once), in one transaction."""
    url = migration_url(database_url(env, service))
    engine = sa.create_engine(url, connect_args=connect_args(url, service))
    try:
        with engine.begin() as conn:
            conn.execute(sa.insert(table), list(rows))
    finally:
        engine.dispose()
