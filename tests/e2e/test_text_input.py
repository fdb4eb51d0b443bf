"""Text input through the real edge: control characters are refused in every string, line breaks in
one-line fields, on every surface and on the internal RPCs, with the surface's own validation error."""

from __future__ import annotations

import uuid

import grpc
import pytest
from hydra.crm.v1 import conversations_pb2, conversations_pb2_grpc, leads_pb2, leads_pb2_grpc

from services.common.channels import internal_metadata
from tests.e2e.conftest import (
    Edge,
    core_key,
    create_instance,
    create_resource,
    create_site,
    open_conversation,
)
from tests.e2e.test_public_site import SUBMIT, validation_errors, visitor
from tests.e2e.test_widget import chat, conversation, widget

PATTERN = "string_pattern_mismatch"


def support_error(response: object, field: str) -> None:
    assert response.status_code == 400, response.text  # type: ignore[attr-defined]
    body = response.json()  # type: ignore[attr-defined]
    assert body["code"] == "validation_error" and field in body["error"], body


@pytest.mark.parametrize("character", ["\x00", "\x0b", "\x1b", "\x7f", "\x85"])
def test_support_routes_refuse_control_characters_and_write_nothing(edge: Edge, character: str) -> None:
    key = edge.key(scopes=("crm:read", "crm:write", "tickets:read", "tickets:write"))
    support_error(edge.http.post("/api/v1/leads", json={"name": f"A{character}"}, headers=key.bearer), "name")
    support_error(
        edge.http.post("/api/v1/tickets", json={"title": f"Help{character}"}, headers=key.bearer), "title"
    )
    support_error(
        edge.http.post(
            "/api/v1/accounts", json={"name": "Acme", "notes": f"x{character}"}, headers=key.bearer
        ),
        "notes",
    )
    lead = create_resource(edge, key, "/api/v1/leads")
    support_error(
        edge.http.patch(f"/api/v1/leads/{lead['id']}", json={"company": f"C{character}"}, headers=key.bearer),
        "company",
    )
    assert edge.http.get("/api/v1/leads", headers=key.bearer).json()["count"] == 1
    assert edge.http.get("/api/v1/tickets", headers=key.bearer).json()["count"] == 0


def test_one_line_fields_refuse_line_breaks_where_multiline_fields_keep_them(edge: Edge) -> None:
    key = edge.key(scopes=("tickets:read", "tickets:write"))
    support_error(
        edge.http.post("/api/v1/tickets", json={"title": "Two\nlines"}, headers=key.bearer), "title"
    )
    created = edge.http.post(
        "/api/v1/tickets",
        json={"title": "One line\twith a tab", "description": "First line\r\nSecond line"},
        headers=key.bearer,
    )
    assert created.status_code == 201, created.text
    assert created.json()["ticket"]["description"] == "First line\r\nSecond line"


def test_hydracore_routes_refuse_control_characters_with_a_422_naming_the_field(edge: Edge) -> None:
    key = core_key(edge)
    response = edge.http.post("/v1/instances", json={"name": "Bot\x00"}, headers=key.api_key)
    assert validation_errors(response) == [(("body", "name"), PATTERN)]
    response = edge.http.post(
        "/v1/instances",
        json={"name": "Bot", "knowledge": [{"title": "Refunds\n", "content": "Within\n30 days."}]},
        headers=key.api_key,
    )
    assert validation_errors(response) == [(("body", "knowledge", 0, "title"), PATTERN)]
    instance = create_instance(edge, key)
    body = {
        "channel_type": "sms",
        "provider": "twilio",
        "external_identifier": "+15550100",
        "config": {"greeting": "Hello\nthere", "nested": {"bad": ["ok", "bell\x07"]}},
    }
    response = edge.http.post(f"/v1/instances/{instance['id']}/channels", json=body, headers=key.api_key)
    assert validation_errors(response) == [(("body", "config", "nested", "bad", 1), PATTERN)]
    listed = edge.http.get(f"/v1/instances/{instance['id']}/channels", headers=key.api_key).json()
    assert listed["count"] == 0


def test_query_parameters_with_control_characters_are_validation_errors(edge: Edge) -> None:
    key = edge.key(scopes=("tickets:read",))
    response = edge.http.get("/api/v1/tickets", params={"status": "open\x0b"}, headers=key.bearer)
    support_error(response, "status")
    core = core_key(edge)
    response = edge.http.get("/v1/instances", params={"status": "active\x00"}, headers=core.api_key)
    assert response.status_code == 422, response.text


def test_form_data_is_checked_all_the_way_down(edge: Edge) -> None:
    site = create_site(edge, core_key(edge))
    with visitor(edge) as client:
        refused = client.post(
            SUBMIT, json={"site_id": site["id"], "form_data": {"message": "hi\x1b[31m", "ok": "fine"}}
        )
        assert validation_errors(refused) == [(("body", "form_data", "message"), PATTERN)]
        kept = client.post(SUBMIT, json={"site_id": site["id"], "form_data": {"message": "Line 1\nLine 2"}})
        assert kept.status_code == 200, kept.text


def test_internal_rpcs_refuse_control_characters_too(edge: Edge) -> None:
    tenant = edge.tenant()
    conversation_id = open_conversation(edge, tenant)
    metadata = internal_metadata(
        tenant, ["conversations:write", "crm:write"], internal_token=edge.env.get("HYDRA_INTERNAL_TOKEN")
    )
    with grpc.insecure_channel(f"127.0.0.1:{edge.env['HYDRA_CRM_PORT']}") as channel:
        conversations = conversations_pb2_grpc.ConversationServiceStub(channel)
        leads = leads_pb2_grpc.LeadServiceStub(channel)
        calls = [
            lambda: leads.CaptureLead(
                leads_pb2.CaptureLeadRequest(email="a@example.com", name="Ada\nLovelace"), metadata=metadata
            ),
            lambda: conversations.CreateConversation(
                conversations_pb2.CreateConversationRequest(channel="web_chat", subject="Hi\x0b"),
                metadata=metadata,
            ),
            lambda: conversations.AddMessage(
                conversations_pb2.AddMessageRequest(
                    conversation_id=conversation_id, role="visitor", content="nul\x00"
                ),
                metadata=metadata,
            ),
        ]
        for call in calls:
            with pytest.raises(grpc.RpcError) as caught:
                call()
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        added = conversations.AddMessage(
            conversations_pb2.AddMessageRequest(
                conversation_id=conversation_id, role="visitor", content="Two\nlines"
            ),
            metadata=metadata,
        )
        assert added.message.content == "Two\nlines"
    assert uuid.UUID(conversation_id)


def test_a_visitor_message_over_several_lines_opens_a_conversation_with_a_one_line_subject(
    edge: Edge,
) -> None:
    w = widget(edge)
    events = chat(edge, w, "Hello,\nhow long do refunds take?\r\n\nThanks")
    assert events[0][0] == "conversation" and events[-1][0] == "done", events
    stored = conversation(edge, w, events[0][1]["conversation_id"])
    assert stored["subject"] == "Hello, how long do refunds take? Thanks"
    refused = edge.http.post(w.path, json={"message": "Hi\x00"}, headers=w.headers)
    assert validation_errors(refused) == [(("body", "message"), PATTERN)]
