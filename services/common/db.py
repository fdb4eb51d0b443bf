"""Database engines: one URL per service, SQLite embedded by default, PostgreSQL with a schema per service."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.rows import namedtuple_row
from sqlalchemy import Executable, Select, Table, event, exc, insert, text
from sqlalchemy.engine import URL, Dialect, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from services.common import tracing

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


class DirectConnection(Protocol):
    """The few operations of the hottest paths (group commits, the outbox dispatcher, batched lookups,
    GET and list reads, the purge of old event records).

    On PostgreSQL they run on psycopg directly: SQLAlchemy's async execution layer costs more CPU
    than the statement itself there. Elsewhere they run through SQLAlchemy, with the same results.
    """

    dialect: str

    async def fetch(self, query: Executable, params: Mapping[str, Any]) -> Sequence[Any]:
        """The rows of `query` (attributes named after its columns), its bind parameters from `params`."""
        ...

    async def insert_many(self, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
        """Inserts rows that all name the same columns."""
        ...

    async def execute(self, statement: Executable, params: Mapping[str, Any]) -> int:
        """Runs a statement that returns no rows (UPDATE, DELETE); how many rows it touched."""
        ...


class Database:
    """A service's engine; `transaction()` commits on success and rolls back on any error."""

    def __init__(self, url: str, *, schema: str, pool_size: int = 10, direct_pool_size: int = 4) -> None:
        parsed = runtime_url(url)
        self.url = parsed
        self.schema = schema
        # Bound values never appear in exception messages (and so never in logs): they are user data.
        options: dict[str, Any] = {"connect_args": connect_args(parsed, schema), "hide_parameters": True}
        self._direct_pool: _PsycopgPool | None = None
        if parsed.get_backend_name() == "postgresql":
            options.update(pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=False)
        self.engine: AsyncEngine = create_async_engine(parsed, **options)
        tracing.trace_engine(self.engine.sync_engine)
        if parsed.get_backend_name() == "sqlite":
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        else:
            self._direct_pool = _PsycopgPool(
                parsed.set(drivername="postgresql").render_as_string(hide_password=False),
                connect_args(parsed, schema),
                size=direct_pool_size,
                statements=_PsycopgStatements(self.engine.dialect),
            )
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

    def direct(self) -> AbstractAsyncContextManager[DirectConnection]:
        """A DirectConnection in autocommit mode: each statement commits on its own."""
        if self._direct_pool is None:
            return _through_alchemy(self.read())
        return self._direct_pool.connection(transaction=False)

    def pool_usage(self) -> tuple[int, int]:
        """Connections of SQLAlchemy's pool checked out now, and how many it keeps (0, 0 for a pool that
        keeps none, such as SQLite's)."""
        pool = self.engine.sync_engine.pool
        checked_out, size = getattr(pool, "checkedout", None), getattr(pool, "size", None)
        if not callable(checked_out) or not callable(size):
            return 0, 0
        return int(checked_out()), int(size())

    def pool_waiting(self) -> int:
        """Tasks waiting for a connection now, in either pool. Read from the pools' own queues every few
        seconds, so that no checkout pays for counting (a test pins it to the releases installed)."""
        queue = getattr(getattr(self.engine.sync_engine.pool, "_pool", None), "_queue", None)
        waiting = _waiters(getattr(queue, "_getters", None))
        if self._direct_pool is not None:
            waiting += self._direct_pool.waiting()
        return waiting

    def goes_direct(self, query: Select[Any]) -> bool:
        """Whether `query` runs on psycopg directly: on PostgreSQL, only if no value of it needs
        SQLAlchemy's conversion (elsewhere `direct()` is SQLAlchemy, which takes any)."""
        return self._direct_pool is None or self._direct_pool.statements.accepts(query)

    def direct_transaction(self) -> AbstractAsyncContextManager[DirectConnection]:
        """A DirectConnection inside one transaction, committed only if the block succeeds."""
        if self._direct_pool is None:
            return _through_alchemy(self.transaction())
        return self._direct_pool.connection(transaction=True)

    async def ping(self) -> None:
        """Raises unless the database answers."""
        async with self.read() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        if self._direct_pool is not None:
            await self._direct_pool.close()
        await self.engine.dispose()


class _AlchemyConnection:
    """DirectConnection through SQLAlchemy (SQLite)."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn
        self.dialect = conn.dialect.name

    async def fetch(self, query: Executable, params: Mapping[str, Any]) -> Sequence[Any]:
        rows: Sequence[Any] = (await self._conn.execute(query, dict(params))).all()
        return rows

    async def insert_many(self, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
        await self._conn.execute(insert(table), list(rows))

    async def execute(self, statement: Executable, params: Mapping[str, Any]) -> int:
        return int((await self._conn.execute(statement, dict(params))).rowcount)


@contextlib.asynccontextmanager
async def _through_alchemy(
    connection: AbstractAsyncContextManager[AsyncConnection],
) -> AsyncIterator[DirectConnection]:
    async with connection as conn:
        yield _AlchemyConnection(conn)


_MAX_STATEMENTS = 1000  # far more than the code builds; more means statements built per call


class _PsycopgStatements:
    """Core statements as psycopg SQL, compiled once each by SQLAlchemy's PostgreSQL dialect."""

    def __init__(self, dialect: Dialect) -> None:
        self._dialect = dialect
        self._queries: dict[Executable, tuple[str, Callable[[Mapping[str, Any]], Mapping[str, Any]]]] = {}
        self._inserts: dict[tuple[Table, tuple[str, ...]], str] = {}
        self._refused: set[Executable] = set()  # statements that need SQLAlchemy's value conversion

    def query(self, query: Executable) -> tuple[str, Callable[[Mapping[str, Any]], Mapping[str, Any]]]:
        """The SQL of `query` and the function turning caller parameters into its bound values.

        Cached by the statement object: callers build their statements once and bind values per call.
        """
        found = self._queries.get(query)
        if found is None:
            if len(self._queries) >= _MAX_STATEMENTS:
                raise RuntimeError("a direct statement built per call: build it once, bind values per call")
            found = self._queries[query] = self._compile_query(query)
        return found

    def accepts(self, query: Executable) -> bool:
        """Whether `query` can run as psycopg SQL (compiled and cached if so; the answer is cached too)."""
        if query in self._refused:
            return False
        try:
            self.query(query)
        except TypeError:
            self._refused.add(query)
            return False
        return True

    def insert(self, table: Table, columns: tuple[str, ...]) -> str:
        """The SQL inserting one row of `columns` into `table` (psycopg's executemany repeats it)."""
        sql = self._inserts.get((table, columns))
        if sql is None:
            compiled = insert(table).compile(dialect=self._dialect, column_keys=list(columns))
            self._require_no_processing(compiled.binds.values(), [])
            sql = self._inserts[(table, columns)] = compiled.string
        return sql

    def _compile_query(
        self, query: Executable
    ) -> tuple[str, Callable[[Mapping[str, Any]], Mapping[str, Any]]]:
        compiled = query.compile(dialect=self._dialect)  # type: ignore[attr-defined]
        d = self._dialect
        processors = {
            name: processor
            for name, bind in compiled.binds.items()
            if (processor := bind.type.dialect_impl(d).bind_processor(d)) is not None
        }
        self._require_no_processing([], query.selected_columns if isinstance(query, Select) else [])

        def bound(params: Mapping[str, Any]) -> Mapping[str, Any]:
            values: dict[str, Any] = compiled.construct_params(dict(params))
            for name, processor in processors.items():
                values[name] = processor(values[name])
            return values

        return compiled.string, bound

    def _require_no_processing(self, binds: Any, columns: Any) -> None:
        """psycopg adapts the values itself; a type that needs SQLAlchemy's conversion can't go direct."""
        d = self._dialect
        needing = [b.key for b in binds if b.type.dialect_impl(d).bind_processor(d) is not None]
        needing += [str(c) for c in columns if c.type.dialect_impl(d).result_processor(d, None) is not None]
        if needing:
            raise TypeError(f"{', '.join(needing)}: SQLAlchemy converts these values: not a direct path")


class _PsycopgConnection:
    """DirectConnection on a psycopg connection (PostgreSQL)."""

    dialect = "postgresql"

    def __init__(self, conn: psycopg.AsyncConnection[Any], statements: _PsycopgStatements) -> None:
        self._conn = conn
        self._statements = statements

    async def fetch(self, query: Executable, params: Mapping[str, Any]) -> Sequence[Any]:
        sql, bound = self._statements.query(query)
        async with self._conn.cursor(row_factory=namedtuple_row) as cursor:
            await cursor.execute(sql, bound(params))
            return await cursor.fetchall()

    async def insert_many(self, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
        sql = self._statements.insert(table, tuple(rows[0]))
        async with self._conn.cursor() as cursor:
            await cursor.executemany(sql, rows)

    async def execute(self, statement: Executable, params: Mapping[str, Any]) -> int:
        sql, bound = self._statements.query(statement)
        async with self._conn.cursor() as cursor:
            await cursor.execute(sql, bound(params))
            return cursor.rowcount


class _PsycopgPool:
    """A few psycopg connections kept open for the direct path (SQLAlchemy's pool serves the rest).

    A connection goes back only if it is idle and sound; any other is closed (a cancelled or broken
    one must not carry its state into the next caller).
    """

    def __init__(
        self, conninfo: str, options: Mapping[str, Any], *, size: int, statements: _PsycopgStatements
    ) -> None:
        self._connect = functools.partial(
            psycopg.AsyncConnection.connect, conninfo, autocommit=True, **options
        )
        self.statements = statements
        self._idle: list[psycopg.AsyncConnection[Any]] = []
        self._slots = asyncio.Semaphore(size)
        # Reads never hold every connection: a burst of slow ones must not hold up group commits.
        self._read_slots = asyncio.Semaphore(max(size - 1, 1))

    @contextlib.asynccontextmanager
    async def connection(self, *, transaction: bool) -> AsyncIterator[DirectConnection]:
        async with contextlib.AsyncExitStack() as slots:
            if not transaction:
                await slots.enter_async_context(self._read_slots)
            await slots.enter_async_context(self._slots)
            try:
                conn = self._idle.pop() if self._idle else tracing.trace_connection(await self._connect())
            except psycopg.Error as error:
                raise _as_alchemy_error(error) from error
            try:
                if transaction:
                    async with conn.transaction():
                        yield _PsycopgConnection(conn, self.statements)
                else:
                    yield _PsycopgConnection(conn, self.statements)
            except psycopg.Error as error:
                if conn.broken:  # the server went away: the idle connections are as dead as this one
                    await self.close()
                raise _as_alchemy_error(error) from error
            finally:
                if conn.closed or conn.info.transaction_status != TransactionStatus.IDLE:
                    await conn.close()
                else:
                    self._idle.append(conn)

    def waiting(self) -> int:
        """Tasks waiting for one of its connections now."""
        return _waiters(getattr(self._slots, "_waiters", None))

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.close()


def _waiters(futures: Any) -> int:
    """How many of an asyncio primitive's waiting futures are still waiting."""
    return sum(1 for f in futures or () if not f.done())


def is_connection_loss(error: BaseException) -> bool:
    """Whether `error` means the database could not be reached or dropped the connection (a restart, a
    failover): the pools reconnect on their own, so the caller may try again. Measured against
    pool_pre_ping (a round trip before every checkout), which would hide the first failure after a
    restart but costs every request, this costs nothing until the connections are lost."""
    if not isinstance(error, exc.DBAPIError):
        return False
    return error.connection_invalidated or isinstance(error, exc.OperationalError | exc.InterfaceError)


def _as_alchemy_error(error: psycopg.Error) -> exc.DBAPIError:
    """The SQLAlchemy exception SQLAlchemy itself would raise, so callers handle one family of errors."""
    kind: type[exc.DBAPIError] = exc.DBAPIError
    for driver_error, alchemy_error in _ERROR_KINDS:
        if isinstance(error, driver_error):
            kind = alchemy_error
            break
    return kind(None, None, error)


# psycopg's DB-API exception classes and SQLAlchemy's wrappers of the same name.
_ERROR_KINDS: tuple[tuple[type[psycopg.Error], type[exc.DBAPIError]], ...] = (
    (psycopg.IntegrityError, exc.IntegrityError),
    (psycopg.DataError, exc.DataError),
    (psycopg.OperationalError, exc.OperationalError),
    (psycopg.ProgrammingError, exc.ProgrammingError),
    (psycopg.InterfaceError, exc.InterfaceError),
    (psycopg.InternalError, exc.InternalError),
    (psycopg.NotSupportedError, exc.NotSupportedError),
)
