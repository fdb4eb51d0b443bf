"""Operator access to each service's dead letters, through the service's own database (as migrations).

Retrying only marks a row due again: the consumer that failed on the event picks it up itself, so the
service need not be reachable now, and no other consumer of the event sees it again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Table
from sqlalchemy.exc import DBAPIError

from hydractl import processes
from services.common.db import Database
from services.common.events.dead_letters import DeadLetter, DeadLetterStore
from services.common.process import Process

Result = TypeVar("Result")


@dataclass(frozen=True)
class _Service:
    """Where one service keeps its dead letters."""

    process: Process[Any]
    table: Table


# The services whose events have consumers.
SERVICES = {
    process.name: _Service(process, process.events.dead_letters)
    for process in processes.ALL
    if process.events is not None
}


class DeadLettersUnavailable(RuntimeError):
    """A service's dead letters could not be read or changed."""


def _across(
    env: Mapping[str, str],
    services: Sequence[str],
    work: Callable[[str, DeadLetterStore], Awaitable[Result]],
) -> list[Result]:
    """Runs `work` on the dead letters of each named service (every one when none is named), in order."""

    async def run() -> list[Result]:
        results = []
        for name in services or list(SERVICES):
            service = SERVICES[name]
            settings = service.process.settings.from_env(env)
            db = Database(
                settings.database_url, schema=service.process.schema, pool_size=1, direct_pool_size=1
            )
            try:
                results.append(await work(name, DeadLetterStore(db, service.table)))
            except DBAPIError as error:
                raise DeadLettersUnavailable(
                    f"{name}: cannot reach its dead letters ({type(error.orig or error).__name__}); "
                    "is its database up and migrated (`hydractl migrate`)?"
                ) from None
            finally:
                await db.dispose()
        return results

    return asyncio.run(run())


def list_dead_letters(
    env: Mapping[str, str], *, services: Sequence[str] = (), limit: int = 100, **filters: Any
) -> list[dict[str, Any]]:
    """The dead letters of the services, newest failure first within each, as dicts with "service"."""

    async def listed(name: str, store: DeadLetterStore) -> list[DeadLetter]:
        return await store.list(limit=limit, **filters)

    found = _across(env, services, listed)
    return [
        {"service": name, **letter.as_dict()}
        for name, letters in zip(services or list(SERVICES), found, strict=True)
        for letter in letters
    ]


def retry_dead_letters(env: Mapping[str, str], *, services: Sequence[str] = (), **filters: Any) -> int:
    """Marks the matching dead letters for another round of attempts by their own consumer; how many."""

    async def retried(_name: str, store: DeadLetterStore) -> int:
        return await store.retry(**filters)

    return sum(_across(env, services, retried))


def drop_dead_letters(env: Mapping[str, str], *, services: Sequence[str] = (), **filters: Any) -> int:
    """Deletes the matching dead letters; how many."""

    async def dropped(_name: str, store: DeadLetterStore) -> int:
        return await store.drop(**filters)

    return sum(_across(env, services, dropped))
