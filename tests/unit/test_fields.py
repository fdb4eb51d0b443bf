"""Input parsing against proto field rules: unknown keys, nulls, types, formats, bounds."""

import datetime as dt
import json
import uuid

import pytest
from google.protobuf import struct_pb2, timestamp_pb2
from hydra.crm.v1 import contacts_pb2, conversations_pb2, leads_pb2
from hydra.instances.v1 import channels_pb2, instances_pb2

from services.common.errors import InvalidPathId, ValidationError
from services.common.fields import (
    nullable,
    parse_input,
    parse_limit,
    parse_path_id,
    parse_request,
    refuse_control_characters,
    timestamp,
)
from services.common.surfaces import CORE, SUPPORT, render

LEAD = leads_pb2.LeadInput.DESCRIPTOR


def struct(**values: object) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(values)
    return s


def errors_of(body: struct_pb2.Struct, *, partial: bool = False) -> list[tuple[tuple, str]]:
    with pytest.raises(ValidationError) as caught:
        parse_input(body, LEAD, partial=partial)
    return [(e.loc, e.type) for e in caught.value.errors]


def test_known_fields_parse_and_null_is_kept() -> None:
    parsed = parse_input(struct(email="a@example.com", phone=None), LEAD, partial=True)
    assert parsed == {"email": "a@example.com", "phone": None}


def test_unknown_key_is_rejected_with_its_name() -> None:
    assert errors_of(struct(emial="a@example.com")) == [(("body", "emial"), "extra_forbidden")]


@pytest.mark.parametrize("email", ["nope", "a@b", "a b@c.com", "@example.com", "a@example."])
def test_invalid_emails_are_rejected(email: str) -> None:
    assert errors_of(struct(email=email)) == [(("body", "email"), "value_error")]


def test_wrong_type_and_too_long_are_both_reported() -> None:
    assert sorted(errors_of(struct(name=5, company="x" * 201))) == [
        (("body", "company"), "string_too_long"),
        (("body", "name"), "string_type"),
    ]


def test_message_names_the_field() -> None:
    with pytest.raises(ValidationError) as caught:
        parse_input(struct(email="bad"), LEAD, partial=False)
    assert caught.value.message == "email: value is not a valid email address"


def test_missing_body_parses_to_nothing() -> None:
    assert parse_input(None, LEAD, partial=False) == {}


@pytest.mark.parametrize(("value", "expected"), [(None, 25), (1, 1), (100, 100)])
def test_limit_defaults_and_bounds(value: int | None, expected: int) -> None:
    assert parse_limit(value) == expected


@pytest.mark.parametrize("value", [0, -1, 101])
def test_limit_out_of_range_is_a_validation_error(value: int) -> None:
    with pytest.raises(ValidationError):
        parse_limit(value)


def test_malformed_path_id_is_not_found_or_422() -> None:
    with pytest.raises(InvalidPathId) as caught:
        parse_path_id("nope", param="id", not_found="Lead not found.")
    assert json.loads(render(caught.value, SUPPORT).body) == {"error": "Lead not found.", "code": "not_found"}
    assert render(caught.value, CORE).http_status == 422
    assert json.loads(render(caught.value, CORE).body)["detail"][0]["loc"] == ["path", "id"]


def test_nullable_values() -> None:
    assert nullable(None).WhichOneof("kind") == "null_value"
    assert nullable("x").string_value == "x"


INSTANCE = instances_pb2.InstanceInput.DESCRIPTOR
CHANNEL = channels_pb2.ChannelInput.DESCRIPTOR


def instance_errors(body: struct_pb2.Struct, *, partial: bool = False) -> list[tuple[tuple, str]]:
    with pytest.raises(ValidationError) as caught:
        parse_input(body, INSTANCE, partial=partial)
    return sorted((e.loc, e.type) for e in caught.value.errors)


def test_nested_objects_and_lists_parse_with_their_own_rules() -> None:
    parsed = parse_input(
        struct(
            name="Bot",
            model={"backend": "openai_compatible", "base_url": "http://localhost:8000/v1", "temperature": 1},
            knowledge=[{"title": "Refunds", "content": "Within 30 days."}],
        ),
        INSTANCE,
        partial=False,
    )
    assert parsed["model"] == {
        "backend": "openai_compatible",
        "base_url": "http://localhost:8000/v1",
        "temperature": 1.0,
    }
    assert parsed["knowledge"] == [{"title": "Refunds", "content": "Within 30 days."}]


def test_errors_inside_nested_values_name_their_full_path() -> None:
    body = struct(
        name="Bot",
        model={"backend": "gpt", "temperature": 2.5, "base_url": "ftp://x", "extra": 1},
        knowledge=[{"title": "ok", "content": "ok"}, {"title": "x" * 201}],
    )
    assert instance_errors(body) == [
        (("body", "knowledge", 1, "content"), "missing"),
        (("body", "knowledge", 1, "title"), "string_too_long"),
        (("body", "model", "backend"), "enum"),
        (("body", "model", "base_url"), "url_parsing"),
        (("body", "model", "extra"), "extra_forbidden"),
        (("body", "model", "temperature"), "less_than_equal"),
    ]


def test_list_and_number_types_are_checked() -> None:
    assert instance_errors(struct(name="Bot", knowledge={"title": "x"}, model={"temperature": "hot"})) == [
        (("body", "knowledge"), "list_type"),
        (("body", "model", "temperature"), "float_type"),
    ]


def test_update_only_fields_are_refused_on_create_and_immutable_ones_on_update() -> None:
    create = struct(channel_type="sms", provider="twilio", external_identifier="+1555", status="active")
    with pytest.raises(ValidationError) as caught:
        parse_input(create, CHANNEL, partial=False)
    assert [(e.loc, e.type) for e in caught.value.errors] == [(("body", "status"), "update_only")]
    with pytest.raises(ValidationError) as caught:
        parse_input(struct(webhook_secret="s", status="error"), CHANNEL, partial=True)
    assert [(e.loc, e.type) for e in caught.value.errors] == [(("body", "webhook_secret"), "immutable")]


def test_object_property_count_is_bounded() -> None:
    body = struct(
        channel_type="sms",
        provider="twilio",
        external_identifier="+1555",
        config={str(i): i for i in range(101)},
    )
    with pytest.raises(ValidationError) as caught:
        parse_input(body, CHANNEL, partial=False)
    assert [(e.loc, e.type) for e in caught.value.errors] == [(("body", "config"), "too_long")]


CONTROL = ["\x00", "\x01", "\x08", "\x0b", "\x0c", "\x1b", "\x1f", "\x7f", "\x80", "\x85", "\x9f"]


@pytest.mark.parametrize("character", CONTROL)
def test_control_characters_are_refused_in_every_string(character: str) -> None:
    assert errors_of(struct(name=f"Ada{character}Lovelace")) == [
        (("body", "name"), "string_pattern_mismatch")
    ]
    body = struct(title="Refunds", content=f"Line one{character}")
    with pytest.raises(ValidationError) as caught:
        parse_input(body, instances_pb2.KnowledgeEntryInput.DESCRIPTOR, partial=False)
    assert [e.loc for e in caught.value.errors] == [("body", "content")]


@pytest.mark.parametrize("line_break", ["\n", "\r", "\r\n", "\u2028", "\u2029"])
def test_one_line_fields_refuse_line_breaks_and_multiline_fields_keep_them(line_break: str) -> None:
    assert errors_of(struct(company=f"Acme{line_break}Inc")) == [
        (("body", "company"), "string_pattern_mismatch")
    ]
    content = f"First line{line_break}second line\twith a tab"
    entry = parse_input(
        struct(title="Refunds\tpolicy", content=content),
        instances_pb2.KnowledgeEntryInput.DESCRIPTOR,
        partial=False,
    )
    assert entry == {"title": "Refunds\tpolicy", "content": content}


def test_unicode_text_that_is_not_control_passes() -> None:
    name = "Zoë Ångström 李 \u200d emoji \U0001f600"
    assert parse_input(struct(name=name), LEAD, partial=False) == {"name": name}


def test_free_form_json_objects_are_checked_all_the_way_down() -> None:
    config = {"ok": "multi\nline", "nested": {"list": ["fine", "bad\x07"]}, "key\nbreak": 1}
    with pytest.raises(ValidationError) as caught:
        parse_input(
            struct(channel_type="sms", provider="twilio", external_identifier="+1555", config=config),
            channels_pb2.ChannelInput.DESCRIPTOR,
            partial=False,
        )
    assert sorted(e.loc for e in caught.value.errors) == [
        ("body", "config", "key\nbreak"),
        ("body", "config", "nested", "list", 1),
    ]


def test_raw_request_messages_are_checked_field_by_field() -> None:
    refuse_control_characters(conversations_pb2.AddMessageRequest(role="visitor", content="two\nlines"))
    with pytest.raises(ValidationError) as caught:
        refuse_control_characters(
            conversations_pb2.CreateConversationRequest(channel="web_chat", subject="two\nlines")
        )
    assert [e.loc for e in caught.value.errors] == [("body", "subject")]
    with pytest.raises(ValidationError) as caught:
        refuse_control_characters(conversations_pb2.AddMessageRequest(role="visitor", content="nul\x00"))
    assert [e.loc for e in caught.value.errors] == [("body", "content")]


def request_errors(request: object) -> list[tuple[tuple, str]]:
    with pytest.raises(ValidationError) as caught:
        parse_request(request)  # type: ignore[arg-type]
    return sorted((e.loc, e.type) for e in caught.value.errors)


def test_internal_requests_are_parsed_by_the_same_field_rules_as_public_bodies() -> None:
    conversation_id = "6f0c5e0a-3b7e-4c1e-9a59-2d7f1c2b8e10"
    parsed = parse_request(
        conversations_pb2.AddMessageRequest(
            conversation_id=conversation_id, role="visitor", content="Two\nlines"
        )
    )
    assert parsed == {
        "conversation_id": uuid.UUID(conversation_id),
        "role": "visitor",
        "content": "Two\nlines",
    }
    # Unset proto3 fields are absent: required ones are missing, optional ones left out.
    assert request_errors(conversations_pb2.AddMessageRequest()) == [
        (("body", "content"), "missing"),
        (("body", "conversation_id"), "missing"),
        (("body", "role"), "missing"),
    ]
    assert request_errors(
        conversations_pb2.AddMessageRequest(
            conversation_id="nope", role="robot", content="x" * 8001, instance_id="also-nope"
        )
    ) == [
        (("body", "content"), "string_too_long"),
        (("body", "conversation_id"), "uuid_parsing"),
        (("body", "instance_id"), "uuid_parsing"),
        (("body", "role"), "enum"),
    ]
    assert request_errors(
        conversations_pb2.ListMessagesRequest(conversation_id=conversation_id, limit=101)
    ) == [(("body", "limit"), "less_than_equal")]
    assert request_errors(leads_pb2.CaptureLeadRequest(email="not-an-email", name="Ada\nLovelace")) == [
        (("body", "email"), "value_error"),
        (("body", "name"), "string_pattern_mismatch"),
    ]


def test_repeated_fields_of_internal_requests_are_bounded_and_checked_item_by_item() -> None:
    ids = [str(uuid.uuid4()) for _ in range(3)]
    assert parse_request(contacts_pb2.LookupContactsRequest(ids=ids)) == {"ids": [uuid.UUID(i) for i in ids]}
    assert parse_request(contacts_pb2.LookupContactsRequest()) == {}
    assert request_errors(contacts_pb2.LookupContactsRequest(ids=[ids[0], "nope"])) == [
        (("body", "ids", 1), "uuid_parsing")
    ]
    assert request_errors(contacts_pb2.LookupContactsRequest(ids=ids * 200)) == [
        (("body", "ids"), "too_long")
    ]


@pytest.mark.parametrize(
    "value",
    [
        dt.datetime(2026, 12, 3, 16, 51, 36, 123456, tzinfo=dt.UTC),
        dt.datetime(2026, 12, 3, 16, 51, 36, 123456),  # naive: UTC, as SQLite returns it
        dt.datetime(2026, 12, 3, 1, 2, 3, 999999, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))),
        dt.datetime(1969, 12, 31, 23, 59, 59, 500000, tzinfo=dt.UTC),
        dt.datetime(1, 1, 1, tzinfo=dt.UTC),
        dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC),
    ],
)
def test_a_stored_time_is_the_instant_protobuf_would_make_of_it(value: dt.datetime) -> None:
    expected = timestamp_pb2.Timestamp()
    expected.FromDatetime(value if value.tzinfo else value.replace(tzinfo=dt.UTC))
    assert timestamp(value) == expected
