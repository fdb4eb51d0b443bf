"""The events tenants see (webhooks and the events feed): each type, what it means and what it carries.

A service announces one by recording, in its outbox, an event of that type whose payload is
`{"data": <the resource as the API answers it>, "occurred_at": <RFC 3339>}` (see `announcement`); its
other outbox events stay internal. Every service forwards its announcements to the event hub.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from services.common.fields import utcnow


@dataclass(frozen=True)
class EventType:
    """One type of event: its name, when it happens, and the proto message its data is."""

    name: str
    description: str
    data: str  # the full name of the message `data` is, e.g. hydra.crm.v1.Lead
    omitted: tuple[str, ...] = ()  # fields of that message left out of the event (too large to send)


_RESOURCES = (
    ("lead", "hydra.crm.v1.Lead", ()),
    ("contact", "hydra.crm.v1.Contact", ()),
    ("account", "hydra.crm.v1.Account", ()),
    ("conversation", "hydra.crm.v1.Conversation", ()),
    ("ticket", "hydra.tickets.v1.Ticket", ()),
    ("instance", "hydra.instances.v1.Instance", ("knowledge",)),
    ("channel", "hydra.instances.v1.Channel", ()),
)
_ACTIONS = {
    "created": "{a} {0} was created; data is the new {0}.",
    "updated": "{a} {0} was changed; data is the {0} after the change.",
    "deleted": "{a} {0} was deleted; data is the {0} as it was.",
}


def _catalogue() -> dict[str, EventType]:
    types = [
        EventType(
            f"{name}.{action}", text.format(name, a="An" if name[0] in "aeiou" else "A"), message, omitted
        )
        for name, message, omitted in _RESOURCES
        for action, text in _ACTIONS.items()
    ]
    types += [
        EventType(
            "message.created",
            "A message was added to a conversation (a visitor's, an agent's or the AI's); data is the "
            "message.",
            "hydra.crm.v1.Message",
        ),
        EventType(
            "form_submission.created",
            "A website form was submitted; data is the submission.",
            "hydra.public.v1.FormSubmission",
        ),
    ]
    return {t.name: t for t in types}


EVENT_TYPES = _catalogue()
# How deliveries are retried unless the operator says otherwise: after the first attempt, at once, the
# Standard Webhooks reference schedule waits 5 s, 5 min, 30 min, 2 h, 5 h, 10 h and 10 h (about 28
# hours from the first attempt to the last); an attempt not answered 2xx in 15 s failed.
RETRY_SECONDS = (5, 300, 1800, 7200, 18000, 36000, 36000)
ATTEMPT_SECONDS = 15
ALL_TYPES = "*"  # an endpoint subscribed to "*" receives every type
# "lead.*" subscribes to every type of one resource.
TYPE_FAMILIES = frozenset(name.partition(".")[0] for name in EVENT_TYPES)


def announcement(data: dict[str, Any]) -> dict[str, Any]:
    """The outbox payload of an event tenants see: its data, and when it happened (now)."""
    return {"data": data, "occurred_at": utcnow().isoformat()}


def is_subscription(pattern: str) -> bool:
    """Whether an endpoint may subscribe to `pattern`: a type, "*", or a resource's "lead.*"."""
    if pattern == ALL_TYPES or pattern in EVENT_TYPES:
        return True
    family, dot, rest = pattern.partition(".")
    return dot == "." and rest == "*" and family in TYPE_FAMILIES


def subscribes(patterns: Iterable[str], event_type: str) -> bool:
    """Whether an endpoint subscribed to `patterns` receives events of `event_type`."""
    family = event_type.partition(".")[0] + ".*"
    return any(p in (ALL_TYPES, event_type, family) for p in patterns)
