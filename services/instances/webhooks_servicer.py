"""Webhook endpoints, their deliveries and the events feed over gRPC, on the Support and HydraCore
surfaces (each in its envelope); and the event hub's internal RPC."""

from __future__ import annotations

import json
from typing import Any

from hydra.instances.v1 import webhooks_pb2, webhooks_pb2_grpc
from sqlalchemy import Row

from services.common.conditional import answer_version, require_match
from services.common.errors import FieldError, ValidationError
from services.common.events.catalogue import EVENT_TYPES, is_subscription
from services.common.events.hub import from_message
from services.common.fields import optional_query, parse_input, parse_path_id, query_choice
from services.common.identity import current_identity
from services.common.paging import descriptor_of, fitting
from services.common.servicing import Context, message_from, page_response
from services.instances.models import DELIVERY_STATUSES
from services.instances.webhooks import (
    DELIVERY_NOT_FOUND,
    WEBHOOK_NOT_FOUND,
    EventHub,
    WebhookDeliveries,
    WebhookService,
)

_INPUT = descriptor_of(webhooks_pb2.WebhookInput)
MAX_EVENTS_PER_CALL = 1000


def webhook(row: Row[Any], secret: str | None = None) -> webhooks_pb2.Webhook:
    """An endpoint as its tenant sees it (with its secret only when just made)."""
    return message_from({**row._asdict(), "secret": secret}, webhooks_pb2.Webhook)


def delivery(row: Row[Any]) -> webhooks_pb2.WebhookDelivery:
    """A delivery as the log lists it."""
    return message_from({**row._asdict(), "webhook_id": row.endpoint_id}, webhooks_pb2.WebhookDelivery)


def event(row: Row[Any]) -> webhooks_pb2.Event:
    """A recorded event as the feed and webhooks carry it."""
    message = webhooks_pb2.Event(id=str(row.id), type=row.type)
    message.timestamp.FromDatetime(row.occurred_at)
    message.data.update(json.loads(row.data))
    return message


def _still_at(row: Row[Any]) -> None:
    """Refuses a write the request's If-Match makes conditional on another version of the endpoint."""
    require_match(lambda: webhook(row))


class _WebhookRpcs:
    """What both surfaces' RPCs do; each surface's servicer wraps the answers in its envelope."""

    def __init__(self, webhooks: WebhookService, deliveries: WebhookDeliveries, hub: EventHub) -> None:
        self._webhooks = webhooks
        self._deliveries = deliveries
        self._hub = hub

    @staticmethod
    def _id(request: Any) -> Any:
        return parse_path_id(request.id, param="id", not_found=WEBHOOK_NOT_FOUND)

    async def _list(self, request: webhooks_pb2.ListWebhooksRequest) -> webhooks_pb2.ListWebhooksResponse:
        page = await self._webhooks.list(
            current_identity(),
            limit=optional_query(request, "limit"),
            cursor=optional_query(request, "cursor"),
        )
        return page_response(
            webhooks_pb2.ListWebhooksResponse,
            page,
            plural="webhooks",
            message=webhook,
            cursor=self._webhooks.cursor,
        )

    async def _create(self, request: webhooks_pb2.CreateWebhookRequest) -> webhooks_pb2.Webhook:
        fields = parse_input(request.webhook, _INPUT, partial=False)
        row = await self._webhooks.create(current_identity(), fields)
        return webhook(row, row.signing_secret)

    async def _get(self, request: webhooks_pb2.GetWebhookRequest) -> webhooks_pb2.Webhook:
        answer = webhook(await self._webhooks.get(current_identity(), self._id(request)))
        answer_version(answer, read=True)
        return answer

    async def _update(self, request: webhooks_pb2.UpdateWebhookRequest) -> webhooks_pb2.Webhook:
        endpoint_id = self._id(request)
        fields = parse_input(request.webhook, _INPUT, partial=True)
        answer = webhook(
            await self._webhooks.update(current_identity(), endpoint_id, fields, check=_still_at)
        )
        answer_version(answer, read=False)
        return answer

    async def _delete(self, request: webhooks_pb2.DeleteWebhookRequest) -> webhooks_pb2.DeleteWebhookResponse:
        await self._webhooks.delete(current_identity(), self._id(request), check=_still_at)
        return webhooks_pb2.DeleteWebhookResponse()

    async def _rotate(self, request: webhooks_pb2.RotateWebhookSecretRequest) -> webhooks_pb2.Webhook:
        row = await self._webhooks.rotate(current_identity(), self._id(request))
        return webhook(row, row.signing_secret)

    async def _list_deliveries(
        self, request: webhooks_pb2.ListWebhookDeliveriesRequest
    ) -> webhooks_pb2.ListWebhookDeliveriesResponse:
        page = await self._deliveries.list(
            current_identity(),
            self._id(request),
            status=query_choice(optional_query(request, "status"), "status", DELIVERY_STATUSES),
            limit=optional_query(request, "limit"),
            cursor=optional_query(request, "cursor"),
        )
        return page_response(
            webhooks_pb2.ListWebhookDeliveriesResponse,
            page,
            plural="deliveries",
            message=delivery,
            cursor=self._deliveries.cursor,
        )

    async def _retry(self, request: webhooks_pb2.RetryWebhookDeliveryRequest) -> webhooks_pb2.WebhookDelivery:
        delivery_id = parse_path_id(request.delivery_id, param="delivery_id", not_found=DELIVERY_NOT_FOUND)
        return delivery(await self._deliveries.retry(current_identity(), self._id(request), delivery_id))

    async def _events(self, request: webhooks_pb2.ListEventsRequest) -> webhooks_pb2.ListEventsResponse:
        kind = optional_query(request, "type")
        if kind is not None and not is_subscription(kind):
            raise ValidationError(
                FieldError(
                    ("query", "type"), "Input should be an event type, or a resource's types (lead.*)", "enum"
                )
            )
        page = await self._hub.feed(
            current_identity(),
            limit=optional_query(request, "limit"),
            cursor=optional_query(request, "cursor"),
            type=kind,
        )
        events = [event(row) for row in page.rows]
        count = fitting(events)
        after = page.rows[count - 1].seq if count < len(events) else page.after
        return webhooks_pb2.ListEventsResponse(
            events=events[:count],
            count=count,
            next_cursor=self._hub.cursor(after),
            has_more=page.more or count < len(events),
        )


class SupportWebhookServicer(_WebhookRpcs, webhooks_pb2_grpc.SupportWebhookServiceServicer):
    """SupportWebhookService: each answer wrapped as {"webhook": ...} or {"delivery": ...}."""

    async def ListWebhooks(
        self, request: webhooks_pb2.ListWebhooksRequest, context: Context
    ) -> webhooks_pb2.ListWebhooksResponse:
        return await self._list(request)

    async def CreateWebhook(
        self, request: webhooks_pb2.CreateWebhookRequest, context: Context
    ) -> webhooks_pb2.WebhookResponse:
        return webhooks_pb2.WebhookResponse(webhook=await self._create(request))

    async def GetWebhook(
        self, request: webhooks_pb2.GetWebhookRequest, context: Context
    ) -> webhooks_pb2.WebhookResponse:
        return webhooks_pb2.WebhookResponse(webhook=await self._get(request))

    async def UpdateWebhook(
        self, request: webhooks_pb2.UpdateWebhookRequest, context: Context
    ) -> webhooks_pb2.WebhookResponse:
        return webhooks_pb2.WebhookResponse(webhook=await self._update(request))

    async def DeleteWebhook(
        self, request: webhooks_pb2.DeleteWebhookRequest, context: Context
    ) -> webhooks_pb2.DeleteWebhookResponse:
        return await self._delete(request)

    async def RotateWebhookSecret(
        self, request: webhooks_pb2.RotateWebhookSecretRequest, context: Context
    ) -> webhooks_pb2.WebhookResponse:
        return webhooks_pb2.WebhookResponse(webhook=await self._rotate(request))

    async def ListWebhookDeliveries(
        self, request: webhooks_pb2.ListWebhookDeliveriesRequest, context: Context
    ) -> webhooks_pb2.ListWebhookDeliveriesResponse:
        return await self._list_deliveries(request)

    async def RetryWebhookDelivery(
        self, request: webhooks_pb2.RetryWebhookDeliveryRequest, context: Context
    ) -> webhooks_pb2.WebhookDeliveryResponse:
        return webhooks_pb2.WebhookDeliveryResponse(delivery=await self._retry(request))

    async def ListEvents(
        self, request: webhooks_pb2.ListEventsRequest, context: Context
    ) -> webhooks_pb2.ListEventsResponse:
        return await self._events(request)


class CoreWebhookServicer(_WebhookRpcs, webhooks_pb2_grpc.CoreWebhookServiceServicer):
    """CoreWebhookService: each answer the resource itself."""

    async def ListCoreWebhooks(
        self, request: webhooks_pb2.ListWebhooksRequest, context: Context
    ) -> webhooks_pb2.ListWebhooksResponse:
        return await self._list(request)

    async def CreateCoreWebhook(
        self, request: webhooks_pb2.CreateWebhookRequest, context: Context
    ) -> webhooks_pb2.Webhook:
        return await self._create(request)

    async def GetCoreWebhook(
        self, request: webhooks_pb2.GetWebhookRequest, context: Context
    ) -> webhooks_pb2.Webhook:
        return await self._get(request)

    async def UpdateCoreWebhook(
        self, request: webhooks_pb2.UpdateWebhookRequest, context: Context
    ) -> webhooks_pb2.Webhook:
        return await self._update(request)

    async def DeleteCoreWebhook(
        self, request: webhooks_pb2.DeleteWebhookRequest, context: Context
    ) -> webhooks_pb2.DeleteWebhookResponse:
        return await self._delete(request)

    async def RotateCoreWebhookSecret(
        self, request: webhooks_pb2.RotateWebhookSecretRequest, context: Context
    ) -> webhooks_pb2.Webhook:
        return await self._rotate(request)

    async def ListCoreWebhookDeliveries(
        self, request: webhooks_pb2.ListWebhookDeliveriesRequest, context: Context
    ) -> webhooks_pb2.ListWebhookDeliveriesResponse:
        return await self._list_deliveries(request)

    async def RetryCoreWebhookDelivery(
        self, request: webhooks_pb2.RetryWebhookDeliveryRequest, context: Context
    ) -> webhooks_pb2.WebhookDelivery:
        return await self._retry(request)

    async def ListCoreEvents(
        self, request: webhooks_pb2.ListEventsRequest, context: Context
    ) -> webhooks_pb2.ListEventsResponse:
        return await self._events(request)


class EventHubServicer(webhooks_pb2_grpc.EventHubServiceServicer):
    """EventHubService: the events other services forward, recorded for the calling tenant."""

    def __init__(self, hub: EventHub) -> None:
        self._hub = hub

    async def RecordEvents(
        self, request: webhooks_pb2.RecordEventsRequest, context: Context
    ) -> webhooks_pb2.RecordEventsResponse:
        if len(request.events) > MAX_EVENTS_PER_CALL:
            raise ValidationError(
                FieldError(("body", "events"), f"At most {MAX_EVENTS_PER_CALL} events a call", "too_long")
            )
        announcements = []
        for index, message in enumerate(request.events):
            if message.type not in EVENT_TYPES:
                raise ValidationError(
                    FieldError(("body", "events", index, "type"), "Unknown event type", "enum")
                )
            try:
                announcements.append(from_message(message))
            except ValueError:
                raise ValidationError(
                    FieldError(
                        ("body", "events", index),
                        "Input should have a UUID as id and a JSON object as data",
                        "value_error",
                    )
                ) from None
        recorded = await self._hub.record(current_identity().tenant_id, announcements)
        return webhooks_pb2.RecordEventsResponse(recorded=recorded)
