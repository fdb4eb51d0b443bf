"""List pages: a page's JSON never outgrows what the edge carries, and cursors round-trip."""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid

import pytest
from google.protobuf import json_format, struct_pb2
from google.protobuf.message import Message
from hydra.crm.v1 import leads_pb2
from hydra.instances.v1 import channels_pb2, instances_pb2

from services.common.errors import ValidationError
from services.common.paging import decode_cursor, encode_cursor, fitting, json_bytes_bound


def printed_bytes(message: Message) -> int:
    """What the transcoder prints: every field, ASCII escapes for non-ASCII, < and > as \\u003c/\\u003e."""
    data = json_format.MessageToDict(
        message, always_print_fields_with_no_presence=True, preserving_proto_field_name=True
    )
    text = json.dumps(data, ensure_ascii=True, separators=(",", ":"))
    return len(text) + 5 * (text.count("<") + text.count(">"))


def instance(content: str, entries: int) -> instances_pb2.Instance:
    message = instances_pb2.Instance(id=str(uuid.uuid4()), name="n", status="active")
    message.model.backend = "knowledge"
    message.model.model.null_value = struct_pb2.NULL_VALUE
    message.knowledge.extend(instances_pb2.KnowledgeEntry(title="", content=content) for _ in range(entries))
    message.created_at.GetCurrentTime()
    return message


@pytest.mark.parametrize(
    "message",
    [
        instance("", 500),
        instance("<" * 2000, 50),
        instance("\u2028\U0001f600\u00e9", 300),
        leads_pb2.Lead(id=str(uuid.uuid4())),
        channels_pb2.Channel(config=struct_pb2.Struct(fields={"a": struct_pb2.Value(bool_value=True)})),
    ],
    ids=["empty entries", "angle brackets", "non-ascii", "lead", "channel"],
)
def test_the_bound_is_never_below_what_the_edge_prints(message: Message) -> None:
    assert json_bytes_bound(message) >= printed_bytes(message)


def test_a_page_ends_at_the_budget_but_always_holds_one() -> None:
    big = instance("<" * 20_000, 100)  # ~12 MB printed
    assert fitting([big, big, big], budget=16 * 1024 * 1024) == 1
    assert fitting([big], budget=1) == 1
    small = instance("a", 1)
    assert fitting([small] * 1000) == 1000


def test_cursors_round_trip_and_anything_else_is_a_validation_error() -> None:
    values = [dt.datetime(2026, 1, 2, 3, 4, 5, 678_000, tzinfo=dt.UTC), uuid.uuid4()]
    cursor = encode_cursor(values)
    assert decode_cursor(cursor, [dt.datetime, uuid.UUID]) == values
    for bad in ("", "not-a-cursor", encode_cursor(["x"]), encode_cursor(["2026-01-01", "not-a-uuid"]), "%%%"):
        with pytest.raises(ValidationError) as raised:
            decode_cursor(bad, [dt.datetime, uuid.UUID])
        assert raised.value.errors[0].loc == ("query", "cursor")


def test_a_signed_cursor_is_refused_when_altered_or_signed_with_another_key() -> None:
    key = b"k" * 32
    cursor = encode_cursor(["2026-01-01T00:00:00+00:00", "wf_1"], key)
    assert decode_cursor(cursor, [str, str], key) == ["2026-01-01T00:00:00+00:00", "wf_1"]
    raw = base64.urlsafe_b64decode(cursor + "==")
    altered = base64.urlsafe_b64encode(raw.replace(b"wf_1", b"wf_2")).decode().rstrip("=")
    unsigned = encode_cursor(["2026-01-01T00:00:00+00:00", "wf_1"])
    for bad in (altered, unsigned, encode_cursor(["2026-01-01T00:00:00+00:00", "wf_1"], b"other")):
        with pytest.raises(ValidationError):
            decode_cursor(bad, [str, str], key)
