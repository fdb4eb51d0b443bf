"""Wiring of a service's event delivery and email from HYDRA_* settings (used by composition roots)."""

from __future__ import annotations

import datetime as dt
import logging
import socket
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Table, func, select

from services.common import config, metrics
from services.common.db import Database
from services.common.events.bus import BatchHandler, Bus, Event, LocalBus, RedisStreamBus
from services.common.events.catalogue import EVENT_TYPES
from services.common.events.dead_letters import Consumer, DeadLetterStore, RetryPolicy
from services.common.events.faults import EventFailed, PermanentError, Unfinished
from services.common.events.hub import EventSink, by_tenant
from services.common.events.inbox import (
    CountingHandler,
    Handler,
    WritingHandler,
    idempotent,
    idempotent_batch,
    idempotent_writer,
)
from services.common.events.outbox import Dispatcher, Outbox, Retention
from services.common.fields import aware, utcnow
from services.common.health import Dependency
from services.common.mail import Email, MaildirMailer, Mailer, MailNotSent, SmtpMailer


@dataclass(frozen=True)
class DeliverySettings:
    """Where events travel and where email goes."""

    redis_url: str | None
    smtp_url: str | None
    hub_address: str  # the event hub's (the instances service), where announcements are forwarded
    mail_from: str
    maildir: Path
    claim_idle_ms: int
    stream_prefix: str = "hydra:events"
    maildir_fsync: bool = True
    separate_consumers: bool = False  # consumers run in the service's delivery process, not its server
    # Dispatched outbox rows and idempotency records are deleted this long after: far past any
    # redelivery (a pending stream entry is claimed again after claim_idle_ms).
    retention: dt.timedelta = dt.timedelta(days=7)
    # A failed event is tried again after 1 s, then 2, 4 … up to a minute apart; after 8 failures
    # that were its own (about two minutes) it becomes a dead letter.
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> DeliverySettings:
        redis_url = env.get("HYDRA_REDIS_URL") or None
        consumers = config.env_choice(env, "HYDRA_EVENTS_CONSUMERS", ("in-process", "separate"), "in-process")
        if consumers == "separate" and redis_url is None:
            raise config.ConfigError(
                "HYDRA_EVENTS_CONSUMERS=separate needs HYDRA_REDIS_URL "
                "(without Redis, events travel in-process)"
            )
        return cls(
            redis_url=redis_url,
            smtp_url=env.get("HYDRA_SMTP_URL") or None,
            hub_address=config.peer_address(env, "instances"),
            mail_from=config.env_str(env, "HYDRA_MAIL_FROM", "Hydra <no-reply@hydra.localhost>"),
            maildir=config.data_dir(env) / "maildir",
            claim_idle_ms=config.env_int(env, "HYDRA_EVENTS_CLAIM_IDLE_MS", 30_000, minimum=100),
            stream_prefix=config.env_str(env, "HYDRA_EVENTS_STREAM_PREFIX", "hydra:events"),
            maildir_fsync=config.env_flag(env, "HYDRA_MAILDIR_FSYNC", True),
            separate_consumers=consumers == "separate",
            retention=dt.timedelta(hours=config.env_int(env, "HYDRA_EVENTS_RETENTION_HOURS", 168, minimum=1)),
            retry=retry_policy(env),
        )


@dataclass(frozen=True, kw_only=True)
class ServiceSettings(config.ProcessSettings):
    """A service's settings: the process's, with HYDRA_DB_POOL_SIZE and where its events travel."""

    delivery: DeliverySettings

    @classmethod
    def common(cls, env: Mapping[str, str], name: str) -> dict[str, Any]:
        """What every process reads, the pool size (the class's default unless set) and the delivery."""
        return {
            **super().common(env, name),
            "delivery": DeliverySettings.from_env(env),
            "pool_size": config.env_int(env, "HYDRA_DB_POOL_SIZE", cls.pool_size, minimum=1),
        }


def retry_policy(env: Mapping[str, str]) -> RetryPolicy:
    """HYDRA_EVENTS_MAX_ATTEMPTS, HYDRA_EVENTS_RETRY_MS (the first wait) and HYDRA_EVENTS_RETRY_MAX_MS."""
    first = config.env_int(env, "HYDRA_EVENTS_RETRY_MS", 1000, minimum=1)
    most = config.env_int(env, "HYDRA_EVENTS_RETRY_MAX_MS", 60_000, minimum=1)
    if most < first:
        raise config.ConfigError(
            f"HYDRA_EVENTS_RETRY_MAX_MS ({most}) must be at least HYDRA_EVENTS_RETRY_MS ({first})"
        )
    return RetryPolicy(
        max_attempts=config.env_int(env, "HYDRA_EVENTS_MAX_ATTEMPTS", 8, minimum=1),
        first_delay=dt.timedelta(milliseconds=first),
        max_delay=dt.timedelta(milliseconds=most),
    )


def bus(settings: DeliverySettings, *, service: str, address: str, logger: logging.Logger) -> Bus:
    """Redis Streams when configured (consumer service@host:port, stable across restarts), else local."""
    if settings.redis_url is None:
        return LocalBus()
    port = address.rpartition(":")[2]
    return RedisStreamBus(
        settings.redis_url,
        stream=f"{settings.stream_prefix}:{service}",
        consumer=f"{service}@{socket.gethostname()}:{port}",
        logger=logger,
        claim_idle_ms=settings.claim_idle_ms,
    )


def mailer(settings: DeliverySettings) -> Mailer:
    """SMTP when configured, else the maildir."""
    if settings.smtp_url:
        return SmtpMailer(settings.smtp_url, sender=settings.mail_from)
    return MaildirMailer(settings.maildir, sender=settings.mail_from, fsync=settings.maildir_fsync)


class EventDelivery:
    """A service's outbox dispatcher and idempotent consumers, run as the process's background tasks."""

    def __init__(
        self,
        settings: DeliverySettings,
        *,
        service: str,
        address: str,
        db: Database,
        outbox: Table,
        inbox: Table,
        dead_letters: Table,
        logger: logging.Logger,
    ) -> None:
        self.bus = bus(settings, service=service, address=address, logger=logger)
        self.mailer = mailer(settings)
        self.separate_consumers = settings.separate_consumers
        self._db = db
        self._inbox = inbox
        self._log = logger
        self._retry = settings.retry
        self._dead_letters = DeadLetterStore(db, dead_letters, max_attempts=settings.retry.max_attempts)
        self._dead_letters_table = dead_letters
        self._consumers: list[Consumer] = []
        self._dispatcher = Dispatcher(db=db, outbox=outbox, bus=self.bus, logger=logger)
        self._outbox_table = outbox
        self._retention = Retention(
            db=db,
            stamps=(outbox.c.dispatched_at, inbox.c.processed_at),
            keep=settings.retention,
            logger=logger,
        )
        # Writes record their events through this outbox, so the dispatcher need not poll while idle.
        self.outbox = Outbox(outbox, on_record=self._dispatcher.wake)

    def _subscribe(self, name: str, topics: set[str], handler: CountingHandler) -> None:
        """Subscribes the named consumer; what it fails on is retried, then kept as a dead letter."""
        consumer = Consumer(name, handler, store=self._dead_letters, policy=self._retry, logger=self._log)
        self._consumers.append(consumer)
        self.bus.subscribe(name, topics, consumer.handle)

    def forward(self, name: str, topics: set[str], send: BatchHandler) -> None:
        """Hands each batch of `topics` events to `send`, with no record of its own: for a receiver that
        takes an event sent twice as once (it is sent again after any failure)."""

        async def handle(events: Sequence[Event]) -> int:
            await send(events)
            return len(events)

        self._subscribe(name, topics, handle)

    def announce_to(self, sink: EventSink) -> None:
        """Forwards every announcement the outbox dispatches (see events.catalogue) to the event hub."""

        async def send(events: Sequence[Event]) -> None:
            for tenant_id, announcements in by_tenant(events).items():
                await sink.record(tenant_id, announcements)

        self.forward("event-hub", set(EVENT_TYPES), send)

    def consume(self, name: str, topics: set[str], handler: Handler) -> None:
        """Runs `handler` once per event of `topics`, recorded under the consumer's `name`."""
        self._subscribe(name, topics, idempotent(self._db, self._inbox, name, handler))

    def consume_writing(self, name: str, topics: set[str], handler: WritingHandler) -> None:
        """Like consume, for handlers that also write to this service's database (in one transaction)."""
        self._subscribe(name, topics, idempotent_writer(self._db, self._inbox, name, handler))

    def send_email(self, name: str, topics: set[str], compose: Callable[[Event], Email | None]) -> None:
        """Emails what `compose` makes of each event of `topics` (nothing when it returns None)."""

        async def send(events: Sequence[Event]) -> None:
            try:
                await self.mailer.send([email for event in events if (email := compose(event)) is not None])
            except MailNotSent as error:
                raise Unfinished(error.sent, error.cause) from error

        guarded = idempotent_batch(self._db, self._inbox, name, send)

        async def handle(events: Sequence[Event]) -> int:
            # Events with nothing to send need no idempotency record (composing is cheap: no rendering).
            sendable: list[Event] = []
            for event in events:
                try:
                    email = compose(event)
                except Exception as error:  # composing is pure: this event would fail the same way again
                    handled = await guarded(sendable)
                    raise EventFailed(event, PermanentError(type(error).__name__), handled=handled) from error
                if email is not None:
                    sendable.append(event)
            return await guarded(sendable)

        self._subscribe(name, topics, handle)

    async def measure(self, service: str) -> None:
        """Brings the event gauges up to date: the outbox's backlog and its age, and the dead letters."""
        outbox, letters = self._outbox_table, self._dead_letters_table
        now = utcnow()
        async with self._db.read() as conn:
            pending, oldest = (
                await conn.execute(
                    select(func.count(), func.min(outbox.c.created_at)).where(
                        outbox.c.dispatched_at.is_(None)
                    )
                )
            ).one()
            states = (
                await conn.execute(
                    select(letters.c.consumer, letters.c.dead_at.is_(None), func.count()).group_by(
                        letters.c.consumer, letters.c.dead_at.is_(None)
                    )
                )
            ).all()
        for consumer, behind in (await self.bus.lag()).items():
            metrics.CONSUMER_LAG.labels(service, consumer).set(behind)
        metrics.OUTBOX_PENDING.labels(service).set(pending)
        metrics.OUTBOX_AGE.labels(service).set((now - aware(oldest)).total_seconds() if oldest else 0)
        seen = {(consumer, "retrying" if retrying else "dead"): count for consumer, retrying, count in states}
        for consumer in {c.name for c in self._consumers} | {c for c, _ in seen}:
            for state in ("retrying", "dead"):
                metrics.DEAD_LETTERS.labels(service, consumer, state).set(seen.get((consumer, state), 0))

    @property
    def dependencies(self) -> list[Dependency]:
        """Redis, when events travel on it: the server's writes go on without it (the outbox keeps their
        events), so it does not decide the server's readiness; a delivery process needs it."""
        if not isinstance(self.bus, RedisStreamBus):
            return []
        return [Dependency("redis", self.bus.ping, required=False)]

    @property
    def background(self) -> list[Callable[[], Coroutine[Any, Any, None]]]:
        """The outbox dispatcher (in the server process, where writes wake it) and the records purge."""
        return [self._dispatcher.run, self._retention.run]

    @property
    def consumers(self) -> list[Callable[[], Coroutine[Any, Any, None]]]:
        """The event consumers and their retries: in the server process, or in a delivery process."""
        return [self.bus.run, *(consumer.run for consumer in self._consumers)]

    async def close(self) -> None:
        await self.bus.close()
