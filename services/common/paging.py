"""Pages of a list: an opaque cursor to the next one, and a bound on a page's size as JSON at the edge."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from services.common.errors import FieldError, ValidationError

# A page stops before its resources could print more JSON than this (it always holds one); the edge
# accepts answers of this size (and of the largest single resource).
PAGE_JSON_BYTES = 16 * 1024 * 1024
# Printed as JSON, one byte of a protobuf string takes at most 6 ("<" becomes \u003c).
_JSON_BYTES_PER_BYTE = 6
# What a repeated message's item adds beyond its own bytes: braces, a comma, empty fields printed.
_ITEM_JSON_BYTES = 64


def descriptor_of(message: Message | type[Message]) -> Descriptor:
    """The message's descriptor. The protobuf stubs type DESCRIPTOR as the pure-Python Descriptor or
    the upb one, two unrelated classes; upb's passes isinstance(…, Descriptor) at run time."""
    return cast(Descriptor, message.DESCRIPTOR)


def json_bytes_bound(message: Message) -> int:
    """At least as many bytes as the transcoder prints for `message` (cheap: no printing)."""
    descriptor = descriptor_of(message)
    bound = _JSON_BYTES_PER_BYTE * message.ByteSize() + _names_bytes(descriptor)
    for field in _repeated_messages(descriptor):
        items = getattr(message, field.name)
        bound += len(items) * (_ITEM_JSON_BYTES + _names_bytes(field.message_type))
    return bound


_NAMES: dict[str, int] = {}


def _names_bytes(descriptor: Descriptor) -> int:
    """Every field name of a message and of its nested messages, quoted, with null values: printed always."""
    cached = _NAMES.get(descriptor.full_name)
    if cached is None:
        _NAMES[descriptor.full_name] = 0  # a message that contains itself ends here
        cached = 2
        for field in descriptor.fields:
            cached += len(field.name) + 8
            if field.message_type is not None and not field.is_repeated:
                cached += _names_bytes(field.message_type)
        _NAMES[descriptor.full_name] = cached
    return cached


def _repeated_messages(descriptor: Descriptor) -> list[FieldDescriptor]:
    return [
        f
        for f in descriptor.fields
        if f.is_repeated and f.message_type is not None and not f.message_type.GetOptions().map_entry
    ]


def fitting(messages: Sequence[Message], budget: int = PAGE_JSON_BYTES) -> int:
    """How many of the first `messages` fit in a page of `budget` bytes of JSON (at least one)."""
    total = 0
    for count, message in enumerate(messages):
        total += json_bytes_bound(message)
        if total > budget and count:
            return count
    return len(messages)


_SIGNATURE_BYTES = 12  # of HMAC-SHA256: a forged cursor is refused, a genuine one stays short


def encode_cursor(values: Sequence[Any], key: bytes | None = None) -> str:
    """An opaque cursor holding the sort values of a page's last row; signed with `key` when given, so
    a cursor a client made or altered is refused."""
    plain = [v.isoformat() if isinstance(v, dt.datetime) else str(v) for v in values]
    data = json.dumps(plain, separators=(",", ":")).encode()
    if key is not None:
        data = hmac.new(key, data, hashlib.sha256).digest()[:_SIGNATURE_BYTES] + data
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def decode_cursor(cursor: str, kinds: Sequence[type], key: bytes | None = None) -> list[Any]:
    """The sort values a cursor holds, typed as `kinds` (datetime, UUID, float, int or str); a 400/422 if
    malformed (or, with `key`, not signed by it)."""
    try:
        data = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        if key is not None:
            signature, data = data[:_SIGNATURE_BYTES], data[_SIGNATURE_BYTES:]
            expected = hmac.new(key, data, hashlib.sha256).digest()[:_SIGNATURE_BYTES]
            if not hmac.compare_digest(signature, expected):
                raise ValueError("not a cursor of ours")
        plain = json.loads(data)
        if not isinstance(plain, list) or len(plain) != len(kinds):
            raise ValueError("wrong length")
        return [_typed(value, kind) for value, kind in zip(plain, kinds, strict=True)]
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise invalid_cursor() from None


def invalid_cursor() -> ValidationError:
    """The error for a ?cursor= that no previous page gave (malformed, altered, or another list's)."""
    return ValidationError(
        FieldError(("query", "cursor"), "Input should be a cursor from a previous page", "value_error")
    )


@dataclass(frozen=True)
class Cursors:
    """A list's cursors, signed with a key every replica of the process shares (unsigned without one:
    only in tests that build services by hand)."""

    key: bytes | None = None

    def encode(self, values: Sequence[Any]) -> str:
        return encode_cursor(values, self.key)

    def decode(self, cursor: str, kinds: Sequence[type]) -> list[Any]:
        return decode_cursor(cursor, kinds, self.key)


UNSIGNED = Cursors()


def _typed(value: Any, kind: type) -> Any:
    if not isinstance(value, str):
        raise TypeError("cursor values are strings")
    if kind is dt.datetime:
        return dt.datetime.fromisoformat(value)
    if kind is uuid.UUID:
        return uuid.UUID(value)
    if kind is float:
        return float(value)
    if kind is int:
        return int(value)
    return value
