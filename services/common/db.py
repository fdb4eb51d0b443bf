"""Database engines: one URL per service, SQLite embedded by default, PostgreSQL with a schema per service."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

# Constraint names every service's metadata uses, so migrations name them predictably.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

_ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+psycopg"}
_SYNC_DRIVERS = {"sqlite": "sqlite", "postgresql": "postgresql+psycopg"}


def _backend(url: URL) -> str:
    backend = url.get_backend_name()
    if backend not in _ASYNC_DRIVERS:
        raise ValueError(
            f"unsupported database {url.render_as_string(hide_password=True)}: use sqlite or postgresql"
        )
    return backend


def runtime_url(url: str) -> URL:
    """The URL with the async driver the services run on."""
    parsed = make_url(url)
    return parsed.set(drivername=_ASYNC_DRIVERS[_backend(parsed)])


def migration_url(url: str) -> URL:
    """The URL with the sync driver Alembic runs on."""
    parsed = make_url(url)
    return parsed.set(drivername=_SYNC_DRIVERS[_backend(parsed)])


def connect_args(url: URL, schema: str) -> dict[str, Any]:
    """Driver arguments: PostgreSQL sessions search only the service's own schema and are named after it."""
    if url.get_backend_name() == "postgresql":
        return {"options": f"-c search_path={schema}", "application_name": f"hydra-{schema}"}
    return {"timeout": 30}


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


class Database:
    """A service's engine; `transaction()` commits on success and rolls back on any error."""

    def __init__(self, url: str, *, schema: str, pool_size: int = 10) -> None:
        parsed = runtime_url(url)
        self.url = parsed
        self.schema = schema
        options: dict[str, Any] = {"connect_args": connect_args(parsed, schema)}
        if parsed.get_backend_name() == "postgresql":
            options.update(pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=False)
        self.engine: AsyncEngine = create_async_engine(parsed, **options)
        if parsed.get_backend_name() == "sqlite":
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self._autocommit = self.engine.execution_options(isolation_level="AUTOCOMMIT")

    @property
    def dialect(self) -> str:
        return self.url.get_backend_name()

    def transaction(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A connection inside one transaction, committed only if the block succeeds."""
        return self.engine.begin()

    def read(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """An autocommit connection for single-statement reads: no BEGIN/ROLLBACK round trips."""
        return self._autocommit.connect()

    async def ping(self) -> None:
        """Raises unless the database answers."""
        async with self.read() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()
