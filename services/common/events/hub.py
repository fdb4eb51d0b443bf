"""Announcements on their way to the event hub (the instances service): every service forwards the ones
its outbox dispatched, a tenant at a time; the hub records each once and queues its webhooks."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
from hydra.instances.v1 import webhooks_pb2, webhooks_pb2_grpc

from services.common.events.bus import Event
from services.common.events.catalogue import EVENT_TYPES
from services.common.events.faults import PermanentError
from services.common.peers import PeerChannel


@dataclass(frozen=True)
class Announcement:
    """An event tenants see: its id (the outbox row's), type, when it happened, and its data."""

    id: uuid.UUID
    type: str
    occurred_at: dt.datetime
    data: dict[str, Any]


def by_tenant(events: Sequence[Event]) -> dict[uuid.UUID, list[Announcement]]:
    """The announcements among `events`, in order, by tenant; an event recorded before its type was
    announced (no data) is not one."""
    found: dict[uuid.UUID, list[Announcement]] = {}
    for event in events:
        data, at = event.payload.get("data"), event.payload.get("occurred_at")
        if event.topic not in EVENT_TYPES or not isinstance(data, dict) or not isinstance(at, str):
            continue
        announcement = Announcement(uuid.UUID(event.id), event.topic, dt.datetime.fromisoformat(at), data)
        found.setdefault(uuid.UUID(event.tenant_id), []).append(announcement)
    return found


class EventSink(Protocol):
    """Where a service's announcements go: the hub itself, or a client of it."""

    async def record(self, tenant_id: uuid.UUID, events: Sequence[Announcement]) -> int:
        """Records the tenant's events (each once, however often sent); returns how many were new."""
        ...


def from_message(message: webhooks_pb2.EventRecord) -> Announcement:
    """An event as the hub's RPC took it; ValueError when its id is not a UUID or its data not a JSON
    object."""
    data = json.loads(message.data)
    if not isinstance(data, dict):
        raise ValueError("data is not a JSON object")
    return Announcement(uuid.UUID(message.id), message.type, message.timestamp.ToDatetime(dt.UTC), data)


def as_message(announcement: Announcement) -> webhooks_pb2.EventRecord:
    """An announcement as the hub's RPC takes it."""
    message = webhooks_pb2.EventRecord(
        id=str(announcement.id), type=announcement.type, data=json.dumps(announcement.data)
    )
    message.timestamp.FromDatetime(announcement.occurred_at)
    return message


class HubClient:
    """The event hub over gRPC, for the services that are not it."""

    def __init__(self, address: str, *, caller: str, timeout: float = 10.0) -> None:
        self._peer = PeerChannel(address, caller=caller, scopes=("events:write",), timeout=timeout)
        self._hub = webhooks_pb2_grpc.EventHubServiceStub(self._peer.channel)

    async def record(self, tenant_id: uuid.UUID, events: Sequence[Announcement]) -> int:
        request = webhooks_pb2.RecordEventsRequest(events=[as_message(e) for e in events])
        try:
            response = await self._hub.RecordEvents(
                request, metadata=self._peer.metadata(tenant_id), timeout=self._peer.timeout
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.INVALID_ARGUMENT:
                raise PermanentError("the event hub refused the events") from None
            raise  # unavailable, timed out: the hub's fault, retried
        return int(response.recorded)

    async def close(self) -> None:
        await self._peer.close()
