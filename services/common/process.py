"""A process as its composition root declares it; its migrate, serve, deliver and `python -m` entry, once."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from sqlalchemy import Table

from services.common import config, grpc_server, metrics, tracing
from services.common import logging as hydra_logging
from services.common.config import ProcessSettings
from services.common.db import Database
from services.common.delivery import EventDelivery, ServiceSettings
from services.common.health import Dependency
from services.common.idempotency import PURGE_SECONDS, IdempotencyKeys
from services.common.migrations import upgrade
from services.common.paging import Cursors

SettingsT = TypeVar("SettingsT", bound=ProcessSettings)
Job = Callable[[], Coroutine[Any, Any, None]]


def every(seconds: float, task: Callable[[], Awaitable[object]], logger: logging.Logger, what: str) -> Job:
    """A background job that runs `task` now and every `seconds`; a failure is logged (its class, never
    its message) and the next round tries again."""

    async def job() -> None:
        while True:
            try:
                await task()
            except Exception as error:
                logger.warning(f"{what} failed", extra={"error": type(error).__name__})
            await asyncio.sleep(seconds)

    return job


# `python -m <module> deliver`: a process that keeps events runs only its consumers.
DELIVER = "deliver"


@dataclass(frozen=True)
class EventTables:
    """Where a service keeps its events: its outbox, the inbox of events it handled, its dead letters."""

    outbox: Table
    inbox: Table
    dead_letters: Table


@dataclass(frozen=True)
class Basics(Generic[SettingsT]):
    """What every process has before its own wiring: its settings, logger, database and event delivery."""

    settings: SettingsT
    logger: logging.Logger
    db: Database
    delivery: EventDelivery | None = None

    @property
    def cursors(self) -> Cursors:
        """How the process's lists sign and check their cursors."""
        return Cursors(self.settings.cursor_key or None)

    @property
    def events(self) -> EventDelivery:
        """The event delivery over the tables the process declared."""
        if self.delivery is None:
            raise TypeError("this process declares no event tables")
        return self.delivery


@dataclass(frozen=True)
class Wiring:
    """What a process builds on its basics: its servicers, and the jobs and resources of its own."""

    register: Callable[[grpc.aio.Server], None]
    background: Sequence[Job] = ()
    # Closed in this order once the server has drained, before the event delivery and the database.
    close: Sequence[Callable[[], Awaitable[None]]] = ()
    start: Callable[[], Awaitable[None]] | None = None  # e.g. another listener, bound before serving
    # Jobs that deliver, run beside the event consumers (in the server, or in the delivery process).
    deliveries: Sequence[Job] = ()


@dataclass(frozen=True)
class Process(Generic[SettingsT]):
    """A process as its composition root declares it: `python -m <module>` runs it (see `main`)."""

    name: str
    module: str
    schema: str
    migrations: Path
    settings: type[SettingsT]
    services: Sequence[ServiceDescriptor]
    build: Callable[[Basics[SettingsT]], Wiring]
    # With event tables, the process dispatches its outbox and runs its consumers (apart, with `deliver`).
    events: EventTables | None = None
    # Its HTTP listeners besides its gRPC port, by their port names (HYDRA_<NAME>_PORT): a replica moves all.
    http_ports: tuple[str, ...] = ()
    # Where the Idempotency-Keys of its HTTP writes are kept (see services.common.idempotency).
    idempotency: Table | None = None

    def migrate(self, settings: SettingsT) -> None:
        """Brings the process's database to its newest migration."""
        upgrade(migrations_dir=self.migrations, url=settings.database_url, schema=self.schema)

    def app(self, settings: SettingsT, logger: logging.Logger) -> grpc_server.GrpcApp:
        """Opens the process's database and event delivery and wires the rest on them."""
        db = Database(settings.database_url, schema=self.schema, pool_size=settings.pool_size)
        delivery = self._delivery(settings, db, logger)
        wiring = self.build(Basics(settings, logger, db, delivery))
        keys = (
            IdempotencyKeys(db, self.idempotency, sealing_key=settings.sealing_key)
            if self.idempotency is not None
            else None
        )
        jobs = [every(PURGE_SECONDS, keys.purge, logger, "idempotency key purge")] if keys else []

        async def measure() -> None:
            in_use, size = db.pool_usage()
            metrics.DB_POOL_IN_USE.labels(self.name).set(in_use)
            metrics.DB_POOL_SIZE.labels(self.name).set(size)
            metrics.DB_POOL_WAITING.labels(self.name).set(db.pool_waiting())
            if delivery is not None:
                await delivery.measure(self.name)

        jobs.append(every(metrics.REFRESH_SECONDS, measure, logger, "metrics refresh"))

        async def close() -> None:
            for closer in wiring.close:
                await closer()
            if delivery is not None:
                await delivery.close()
            await db.dispose()

        # Readiness follows the process's own database only: with a peer or Redis down it still serves
        # what it can (tickets its reads, writes answering 503; the gatekeeper its keys, with in-process
        # limits; every service its writes, their events kept in the outbox). A delivery process, which
        # reads its events from Redis, needs Redis too.
        return grpc_server.GrpcApp(
            name=self.name,
            address=settings.address,
            services=self.services,
            register=wiring.register,
            dependencies=[
                Dependency("database", db.ping),
                *(delivery.dependencies if delivery is not None else ()),
            ],
            close=close,
            background=[*wiring.background, *jobs, *(delivery.background if delivery else ())],
            consumers=[*(delivery.consumers if delivery else ()), *wiring.deliveries],
            separate_consumers=delivery.separate_consumers if delivery else False,
            start=wiring.start,
            idempotency=keys,
        )

    def _delivery(self, settings: SettingsT, db: Database, logger: logging.Logger) -> EventDelivery | None:
        if self.events is None:
            return None
        if not isinstance(settings, ServiceSettings):
            raise TypeError(f"{self.name} keeps events: its settings must say where they travel")
        return EventDelivery(
            settings.delivery,
            service=self.name,
            address=settings.address,
            db=db,
            outbox=self.events.outbox,
            inbox=self.events.inbox,
            dead_letters=self.events.dead_letters,
            logger=logger,
        )

    async def serve(self, settings: SettingsT, *, stop: asyncio.Event | None = None) -> None:
        """Runs the gRPC server until stopped."""
        logger = hydra_logging.configure(self.name, settings.log_level)
        tracing.start(self.name, config.current_env())
        await grpc_server.serve(self.app(settings, logger), logger, stop=stop)

    async def deliver(self, settings: SettingsT, *, stop: asyncio.Event | None = None) -> None:
        """Runs the event consumers in a process of their own until stopped."""
        logger = hydra_logging.configure(f"{self.name}-delivery", settings.log_level)
        tracing.start(f"{self.name}-delivery", config.current_env())
        await grpc_server.deliver(self.app(settings, logger), logger, stop=stop)

    def main(self, argv: Sequence[str] | None = None) -> None:
        """`python -m <module>` runs the gRPC server; `python -m <module> deliver`, its event consumers."""
        roles: dict[tuple[str, ...], Callable[[SettingsT], Coroutine[Any, Any, None]]] = {(): self.serve}
        if self.events is not None:
            roles[(DELIVER,)] = self.deliver
        role = roles.get(tuple(sys.argv[1:] if argv is None else argv))
        if role is None:
            roles_named = f" [{DELIVER}]" if self.events is not None else ""
            raise SystemExit(f"usage: python -m {self.module}{roles_named}")
        grpc_server.run(role(self.settings.from_env()))
