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

from services.common.db import Database
from services.common.dead_letters import DeadLetter, DeadLetterStore
from services.crm import models as crm_models
from services.crm.config import Settings as CrmSettings
from services.crm.server import SCHEMA as CRM_SCHEMA
from services.instances import models as instances_models
from services.instances.config import Settings as InstancesSettings
from services.instances.server import SCHEMA as INSTANCES_SCHEMA
from services.public import models as public_models
from services.public.config import Settings as PublicSettings
from services.public.server import SCHEMA as PUBLIC_SCHEMA
from services.tickets import models as tickets_models
from services.tickets.config import Settings as TicketsSettings
from services.tickets.server import SCHEMA as TICKETS_SCHEMA

Result = TypeVar("Result")


@dataclass(frozen=True)
class _Service:
    """Where one service keeps its dead letters."""

    schema: str
    database_url: Callable[[Mapping[str, str]], str]
    table: Table


# The services whose events have consumers.
SERVICES = {
    "crm": _Service(CRM_SCHEMA, lambda env: CrmSettings.from_env(env).database_url, crm_models.dead_letters),
    "tickets": _Service(
        TICKETS_SCHEMA, lambda env: TicketsSettings.from_env(env).database_url, tickets_models.dead_letters
    ),
    "instances": _Service(
        INSTANCES_SCHEMA,
        lambda env: InstancesSettings.from_env(env).database_url,
        instances_models.dead_letters,
    ),
    "public": _Service(
        PUBLIC_SCHEMA, lambda env: PublicSettings.from_env(env).database_url, public_models.dead_letters
    ),
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
            db = Database(service.database_url(env), schema=service.schema, pool_size=1, direct_pool_size=1)
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
