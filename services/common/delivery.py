"""Wiring of a service's event delivery and email from HYDRA_* settings (used by composition roots)."""

from __future__ import annotations

import datetime as dt
import logging
import socket
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Table

from services.common import config
from services.common.db import Database
from services.common.events import (
    Bus,
    Dispatcher,
    Event,
    Handler,
    LocalBus,
    RedisStreamBus,
    Retention,
    Unfinished,
    WritingHandler,
    idempotent,
    idempotent_batch,
    idempotent_writer,
)
from services.common.mail import Email, MaildirMailer, Mailer, MailNotSent, SmtpMailer
from services.common.outbox import Outbox


@dataclass(frozen=True)
class DeliverySettings:
    """Where events travel and where email goes."""

    redis_url: str | None
    smtp_url: str | None
    mail_from: str
    maildir: Path
    claim_idle_ms: int
    stream_prefix: str = "hydra:events"
    maildir_fsync: bool = True
    separate_consumers: bool = False  # consumers run in the service's delivery process, not its server
    # Dispatched outbox rows and idempotency records are deleted this long after: far past any
    # redelivery (a pending stream entry is claimed again after claim_idle_ms).
    retention: dt.timedelta = dt.timedelta(days=7)

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
            mail_from=config.env_str(env, "HYDRA_MAIL_FROM", "Hydra <no-reply@hydra.localhost>"),
            maildir=config.data_dir(env) / "maildir",
            claim_idle_ms=config.env_int(env, "HYDRA_EVENTS_CLAIM_IDLE_MS", 30_000, minimum=100),
            stream_prefix=config.env_str(env, "HYDRA_EVENTS_STREAM_PREFIX", "hydra:events"),
            maildir_fsync=config.env_flag(env, "HYDRA_MAILDIR_FSYNC", True),
            separate_consumers=consumers == "separate",
            retention=dt.timedelta(hours=config.env_int(env, "HYDRA_EVENTS_RETENTION_HOURS", 168, minimum=1)),
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
        logger: logging.Logger,
    ) -> None:
        self.bus = bus(settings, service=service, address=address, logger=logger)
        self.mailer = mailer(settings)
        self.separate_consumers = settings.separate_consumers
        self._db = db
        self._inbox = inbox
        self._dispatcher = Dispatcher(db=db, outbox=outbox, bus=self.bus, logger=logger)
        self._retention = Retention(db=db, outbox=outbox, inbox=inbox, keep=settings.retention, logger=logger)
        # Writes record their events through this outbox, so the dispatcher need not poll while idle.
        self.outbox = Outbox(outbox, on_record=self._dispatcher.wake)

    def consume(self, name: str, topics: set[str], handler: Handler) -> None:
        """Runs `handler` once per event of `topics`, recorded under the consumer's `name`."""
        self.bus.subscribe(name, topics, idempotent(self._db, self._inbox, name, handler))

    def consume_writing(self, name: str, topics: set[str], handler: WritingHandler) -> None:
        """Like consume, for handlers that also write to this service's database (in one transaction)."""
        self.bus.subscribe(name, topics, idempotent_writer(self._db, self._inbox, name, handler))

    def send_email(self, name: str, topics: set[str], compose: Callable[[Event], Email | None]) -> None:
        """Emails what `compose` makes of each event of `topics` (nothing when it returns None)."""

        async def send(events: Sequence[Event]) -> None:
            try:
                await self.mailer.send([email for event in events if (email := compose(event)) is not None])
            except MailNotSent as error:
                raise Unfinished(error.sent, error.cause) from error

        guarded = idempotent_batch(self._db, self._inbox, name, send)

        async def handle(events: Sequence[Event]) -> None:
            # Events with nothing to send need no idempotency record (composing is cheap: no rendering).
            await guarded([event for event in events if compose(event) is not None])

        self.bus.subscribe(name, topics, handle)

    @property
    def background(self) -> list[Callable[[], Coroutine[Any, Any, None]]]:
        """The outbox dispatcher (in the server process, where writes wake it) and the records purge."""
        return [self._dispatcher.run, self._retention.run]

    @property
    def consumers(self) -> list[Callable[[], Coroutine[Any, Any, None]]]:
        """The event consumers: in the server process, or in a delivery process of their own."""
        return [self.bus.run]

    async def close(self) -> None:
        await self.bus.close()
