"""Strict parsing of input against proto messages and their field rules (JSON bodies of the public
APIs, request messages of internal RPCs), and typed output helpers."""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
import urllib.parse
import uuid
from collections.abc import Mapping
from typing import Any, overload

from google.protobuf import struct_pb2, timestamp_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hydra.options.v1 import options_pb2

from services.common.errors import FieldError, InvalidPathId, Loc, UnreadableBody, ValidationError
from services.common.paging import descriptor_of

StringFormat = options_pb2.StringFormat

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
# Refused in every string: U+0000 and the other C0 and C1 control characters (and DEL), except tab,
# LF and CR. They end up in email headers, logs, terminals and CSV exports, where they do harm.
# Written as \uXXXX escapes, which Python's re and JSON Schema's (ECMA-262) patterns both read.
CONTROL_CHARACTERS = r"\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f"
# Refused in one-line strings (names, titles, emails, subjects) as well: every kind of line break.
LINE_BREAKS = r"\u000a\u000d\u2028\u2029"
_CONTROL = re.compile(f"[{CONTROL_CHARACTERS}]")
_LINE_BREAK = re.compile(f"[{LINE_BREAKS}]")


def text_pattern(*, multiline: bool) -> str:
    """The anchored pattern acceptable text matches (as published in the OpenAPI document)."""
    refused = CONTROL_CHARACTERS if multiline else CONTROL_CHARACTERS + LINE_BREAKS
    return f"^[^{refused}]*$"


_INT_TYPES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**53), 2**53),  # JSON numbers are doubles: stay exact
}


def struct_to_dict(struct: struct_pb2.Struct) -> dict[str, Any]:
    """A Struct as plain Python values, keeping integral numbers as floats for the checks below."""
    return {key: value_to_python(value) for key, value in struct.fields.items()}


def value_to_python(value: struct_pb2.Value) -> Any:
    """A protobuf Value as a plain Python value (None for null or unset)."""
    kind = value.WhichOneof("kind")
    if kind == "struct_value":
        return struct_to_dict(value.struct_value)
    if kind == "list_value":
        return [value_to_python(v) for v in value.list_value.values]
    if kind in (None, "null_value"):
        return None
    return getattr(value, kind)


def parse_input(body: struct_pb2.Struct | None, schema: Descriptor, *, partial: bool) -> dict[str, Any]:
    """Validates a JSON object against `schema`'s fields and rules; returns the given fields.

    `partial` is PATCH: nothing is required, immutable fields are rejected, update-only fields allowed.
    Unknown keys are errors, so a typo never passes silently.
    """
    data = struct_to_dict(body) if body is not None else {}
    return _parse_object(data, schema, partial=partial, prefix=("body",))


def check_json_body(body: bytes) -> None:
    """Refuses a body that is not JSON as FastAPI does: json_invalid at the character where decoding
    stopped, with the parser's reason (text that is not UTF-8, -16 or -32: 400). A body nested deeper
    than the parser goes is not judged here (FastAPI would fail on it): whoever reads it next refuses it."""
    try:
        json.loads(body)
    except RecursionError:
        return
    except json.JSONDecodeError as error:
        ctx = {"error": error.msg}
        raise ValidationError(
            FieldError(
                ("body", error.pos), "JSON decode error", "json_invalid", (("input", {}), ("ctx", ctx))
            )
        ) from None
    except UnicodeDecodeError:
        raise UnreadableBody("There was an error parsing the body") from None


def parse_request(request: Message) -> dict[str, Any]:
    """Validates an internal RPC's request message against its field rules, as parse_input does a JSON
    body; returns its set fields, parsed (an unset proto3 field is absent, so `required` means non-empty)."""
    return _parse_object(_set_fields(request), descriptor_of(request), partial=False, prefix=("body",))


def _set_fields(message: Message) -> dict[str, Any]:
    """The fields a message carries, as the JSON values parse_input reads."""
    return {field.name: _plain(field, value) for field, value in message.ListFields()}


def _plain(field: FieldDescriptor, value: Any) -> Any:
    if field.is_repeated:
        return [_plain_single(field, item) for item in value]
    return _plain_single(field, value)


def _plain_single(field: FieldDescriptor, value: Any) -> Any:
    if field.message_type is None:
        return value
    if field.message_type.full_name == _STRUCT:
        return struct_to_dict(value)
    if field.message_type.full_name == _VALUE:
        return value_to_python(value)
    return _set_fields(value)


def _parse_object(data: dict[str, Any], schema: Descriptor, *, partial: bool, prefix: Loc) -> dict[str, Any]:
    errors: list[FieldError] = []
    parsed: dict[str, Any] = {}
    for key in data:
        if key not in schema.fields_by_name:
            errors.append(FieldError((*prefix, key), "Extra inputs are not permitted", "extra_forbidden"))
    for field in schema.fields:
        rules = field.GetOptions().Extensions[options_pb2.rules]
        loc = (*prefix, field.name)
        if field.name not in data:
            if rules.required and not partial:
                errors.append(FieldError(loc, "Field required", "missing"))
            continue
        if partial and rules.immutable:
            errors.append(FieldError(loc, "Field cannot be changed", "immutable"))
            continue
        if not partial and rules.update_only:
            errors.append(FieldError(loc, "Field can only be set by an update", "update_only"))
            continue
        try:
            parsed[field.name] = _parse_field(data[field.name], field, rules, loc, partial)
        except ValidationError as error:
            errors.extend(error.errors)
    if errors:
        raise ValidationError(errors)
    return parsed


def _parse_field(
    value: Any, field: FieldDescriptor, rules: options_pb2.FieldRules, loc: Loc, partial: bool
) -> Any:
    if value is None:
        if rules.nullable:
            return None
        raise ValidationError(FieldError(loc, "Field may not be null", "none_forbidden"))
    if field.is_repeated:
        if not isinstance(value, list):
            raise ValidationError(FieldError(loc, "Input should be a valid list", "list_type"))
        if rules.max_items and len(value) > rules.max_items:
            raise ValidationError(
                FieldError(loc, f"List should have at most {rules.max_items} items", "too_long")
            )
        errors: list[FieldError] = []
        items = []
        for index, item in enumerate(value):
            try:
                items.append(_parse_single(item, field, rules, (*loc, index), partial=False))
            except ValidationError as error:
                errors.extend(error.errors)
        if errors:
            raise ValidationError(errors)
        return items
    return _parse_single(value, field, rules, loc, partial)


def _parse_single(
    value: Any, field: FieldDescriptor, rules: options_pb2.FieldRules, loc: Loc, partial: bool
) -> Any:
    if field.type == FieldDescriptor.TYPE_STRING:
        return _parse_string(value, rules, loc)
    if field.type in _INT_TYPES:
        return _parse_int(value, rules, loc, _INT_TYPES[field.type])
    if field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return _parse_number(value, rules, loc)
    if field.type == FieldDescriptor.TYPE_BOOL:
        if not isinstance(value, bool):
            raise ValidationError(FieldError(loc, "Input should be a valid boolean", "bool_type"))
        return value
    if field.message_type is not None:
        if not isinstance(value, dict):
            raise ValidationError(FieldError(loc, "Input should be a valid dictionary", "dict_type"))
        if field.message_type.full_name != "google.protobuf.Struct":
            return _parse_object(value, field.message_type, partial=partial, prefix=loc)
        if rules.max_items and len(value) > rules.max_items:
            raise ValidationError(
                FieldError(loc, f"Object should have at most {rules.max_items} properties", "too_long")
            )
        if errors := _json_text_errors(value, loc):
            raise ValidationError(errors)
        return value
    raise TypeError(f"unsupported input field type for {field.full_name}")


def _parse_number(value: Any, rules: options_pb2.FieldRules, loc: Loc) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(FieldError(loc, "Input should be a valid number", "float_type"))
    number = float(value)
    low = rules.minimum_number if rules.HasField("minimum_number") else None
    high = rules.maximum_number if rules.HasField("maximum_number") else None
    if low is not None and number < low:
        message = f"Input should be greater than or equal to {low:g}"
        raise ValidationError(FieldError(loc, message, "greater_than_equal"))
    if high is not None and number > high:
        message = f"Input should be less than or equal to {high:g}"
        raise ValidationError(FieldError(loc, message, "less_than_equal"))
    return number


def text_error(value: str, loc: Loc, *, multiline: bool) -> FieldError | None:
    """Why `value` is not acceptable text (a control character, or a line break in a one-line
    field), or None."""
    if value.isprintable():  # the common case, and the fastest test
        return None
    if _CONTROL.search(value):
        return FieldError(loc, "String should not contain control characters", "string_pattern_mismatch")
    if not multiline and _LINE_BREAK.search(value):
        return FieldError(loc, "String should be a single line", "string_pattern_mismatch")
    return None


def _json_text_errors(value: Any, loc: Loc) -> list[FieldError]:
    """Text errors anywhere in a free-form JSON value: keys are one line, strings may span lines."""
    if isinstance(value, str):
        error = text_error(value, loc, multiline=True)
        return [] if error is None else [error]
    errors: list[FieldError] = []
    if isinstance(value, dict):
        for key, item in value.items():
            key_error = text_error(key, (*loc, key), multiline=False)
            errors.extend([key_error] if key_error is not None else _json_text_errors(item, (*loc, key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            errors.extend(_json_text_errors(item, (*loc, index)))
    return errors


def refuse_control_characters(message: Message, loc: Loc = ("body",)) -> None:
    """Validates every string a request message carries (nested messages included) as text, one line
    unless the field's rules say multiline; for RPCs whose fields parse_input does not read."""
    errors: list[FieldError] = []
    for field, value in message.ListFields():
        multiline = field.GetOptions().Extensions[options_pb2.rules].multiline
        values = value if field.is_repeated else [value]
        for index, item in enumerate(values):
            where = (*loc, field.name, index) if field.is_repeated else (*loc, field.name)
            if isinstance(item, str):
                error = text_error(item, where, multiline=multiline)
                if error is not None:
                    errors.append(error)
            elif field.message_type is not None and field.message_type.full_name in (_STRUCT, _VALUE):
                python = (
                    struct_to_dict(item) if field.message_type.full_name == _STRUCT else value_to_python(item)
                )
                errors.extend(_json_text_errors(python, where))
            elif isinstance(item, Message):
                try:
                    refuse_control_characters(item, where)
                except ValidationError as error:
                    errors.extend(error.errors)
    if errors:
        raise ValidationError(errors)


def _parse_string(value: Any, rules: options_pb2.FieldRules, loc: Loc) -> Any:
    if not isinstance(value, str):
        raise ValidationError(FieldError(loc, "Input should be a valid string", "string_type"))
    if (error := text_error(value, loc, multiline=rules.multiline)) is not None:
        raise ValidationError(error)
    if len(value) < rules.min_length:
        raise ValidationError(
            FieldError(loc, f"String should have at least {rules.min_length} characters", "string_too_short")
        )
    if rules.max_length and len(value) > rules.max_length:
        raise ValidationError(
            FieldError(loc, f"String should have at most {rules.max_length} characters", "string_too_long")
        )
    if rules.one_of and value not in rules.one_of:
        allowed = ", ".join(f"'{v}'" for v in rules.one_of)
        raise ValidationError(FieldError(loc, f"Input should be one of {allowed}", "enum"))
    if rules.format == StringFormat.STRING_FORMAT_EMAIL and not _EMAIL.match(value):
        raise ValidationError(FieldError(loc, "value is not a valid email address", "value_error"))
    if rules.format == StringFormat.STRING_FORMAT_URL:
        parts = urllib.parse.urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValidationError(FieldError(loc, "Input should be a valid http(s) URL", "url_parsing"))
    if rules.format == StringFormat.STRING_FORMAT_UUID:
        try:
            return uuid.UUID(value)
        except ValueError:
            raise ValidationError(FieldError(loc, "Input should be a valid UUID", "uuid_parsing")) from None
    if rules.format == StringFormat.STRING_FORMAT_DATE:
        try:
            if len(value) != 10:
                raise ValueError(value)
            return dt.date.fromisoformat(value)
        except ValueError:
            raise ValidationError(
                FieldError(loc, "Input should be a valid date in the format YYYY-MM-DD", "date_parsing")
            ) from None
    return value


def _parse_int(value: Any, rules: options_pb2.FieldRules, loc: Loc, bounds: tuple[int, int]) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or not float(value).is_integer():
        raise ValidationError(FieldError(loc, "Input should be a valid integer", "int_type"))
    number = int(value)
    low = rules.minimum if rules.HasField("minimum") else bounds[0]
    high = rules.maximum if rules.HasField("maximum") else bounds[1]
    if number < low:
        raise ValidationError(
            FieldError(loc, f"Input should be greater than or equal to {low}", "greater_than_equal")
        )
    if number > high:
        raise ValidationError(
            FieldError(loc, f"Input should be less than or equal to {high}", "less_than_equal")
        )
    return number


def parse_path_id(value: str, *, param: str, not_found: str) -> uuid.UUID:
    """A path UUID; anything else is `not_found` on /api/v1 and 422 on /v1."""
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidPathId(param, not_found) from None


def parse_limit(value: int | None, *, default: int = 25, maximum: int = 100, name: str = "limit") -> int:
    """A bounded count query parameter (`limit` by default), 1..maximum."""
    if value is None:
        return default
    if not 1 <= value <= maximum:
        raise ValidationError(
            FieldError(("query", name), f"must be between 1 and {maximum}", f"{name}_range")
        )
    return value


def nullable(value: Any) -> struct_pb2.Value:
    """A JSON value for a nullable scalar column: null, string (UUIDs, dates, times as text), or number."""
    json_value = struct_pb2.Value()
    _set_value(json_value, value)
    return json_value


def _set_value(target: struct_pb2.Value, value: Any) -> None:
    """Sets a Value field in place to a nullable scalar column's JSON value (see nullable)."""
    if value is None:
        target.null_value = struct_pb2.NULL_VALUE
    elif isinstance(value, dt.datetime):
        target.string_value = timestamp(value).ToJsonString()
    elif isinstance(value, bool):
        target.bool_value = value
    elif isinstance(value, int | float):
        target.number_value = value
    elif isinstance(value, uuid.UUID | dt.date):
        target.string_value = str(value)
    else:
        target.string_value = value


def timestamp(value: dt.datetime) -> timestamp_pb2.Timestamp:
    """A protobuf Timestamp for a stored datetime (naive values are UTC, as SQLite returns them)."""
    stamp = timestamp_pb2.Timestamp()
    _set_timestamp(stamp, value)
    return stamp


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_NAIVE_EPOCH = dt.datetime(1970, 1, 1)


def _set_timestamp(target: timestamp_pb2.Timestamp, value: dt.datetime) -> None:
    # Timestamp.FromDatetime does the same arithmetic through calendar.timegm, five times slower: a list
    # of 25 rows sets 50 of them.
    since = value - (_EPOCH if value.tzinfo is not None else _NAIVE_EPOCH)
    target.seconds = since.days * 86_400 + since.seconds
    target.nanos = since.microseconds * 1000


def utcnow() -> dt.datetime:
    """The current time, timezone-aware UTC."""
    return dt.datetime.now(dt.UTC)


@overload
def aware(moment: dt.datetime) -> dt.datetime: ...
@overload
def aware(moment: None) -> None: ...
def aware(moment: dt.datetime | None) -> dt.datetime | None:
    """A stored time as UTC-aware (SQLite returns stored times without their zone; they are UTC)."""
    return moment if moment is None or moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


_VALUE = "google.protobuf.Value"
_TIMESTAMP = "google.protobuf.Timestamp"
_STRUCT = "google.protobuf.Struct"


def to_message(row: Any, message_type: type[Message]) -> Message:
    """A stored row (or a JSON object of a JSON column) as an API message, field by field by name.

    Value fields become JSON null when empty; nested messages and lists of them are built the same way.
    """
    message = message_type()
    _fill(message, row)
    return message


# How _fill sets each kind of field.
_SET_VALUE, _SET_TIMESTAMP, _SET_STRUCT, _SET_MAP, _ADD_MESSAGES, _EXTEND, _FILL, _SET_STRING, _SET = range(9)


@functools.cache
def _fill_plan(descriptor: Descriptor) -> tuple[tuple[str, int], ...]:
    """Each field of a message type and how it is set: read off the descriptor once per type, not once
    per field of every row."""
    plan = []
    for field in descriptor.fields:
        kind = field.message_type.full_name if field.message_type is not None else None
        if kind == _VALUE:
            how = _SET_VALUE
        elif kind == _TIMESTAMP:
            how = _SET_TIMESTAMP
        elif kind == _STRUCT:
            how = _SET_STRUCT
        elif kind is not None and field.message_type.GetOptions().map_entry:
            how = _SET_MAP
        elif field.is_repeated:
            how = _ADD_MESSAGES if kind is not None else _EXTEND
        elif kind is not None:
            how = _FILL
        else:
            how = _SET_STRING if field.type == FieldDescriptor.TYPE_STRING else _SET
        plan.append((field.name, how))
    return tuple(plan)


def _fill(message: Message, row: Any) -> None:
    mapping = isinstance(row, Mapping)
    for name, how in _fill_plan(message.DESCRIPTOR):
        value = row.get(name) if mapping else getattr(row, name, None)
        if how == _SET_VALUE:
            _set_value(getattr(message, name), value)
        elif value is None:
            continue
        elif how == _SET_STRING:
            setattr(message, name, str(value))
        elif how == _SET:
            setattr(message, name, value)
        elif how == _SET_TIMESTAMP:
            _set_timestamp(getattr(message, name), value)
        elif how == _SET_STRUCT:
            getattr(message, name).SetInParent()  # {} is still printed as {}
            getattr(message, name).update(value)
        elif how == _SET_MAP:
            getattr(message, name).update(value)
        elif how == _ADD_MESSAGES:
            for item in value:
                _fill(getattr(message, name).add(), item)
        elif how == _EXTEND:
            getattr(message, name).extend(value)
        else:
            _fill(getattr(message, name), value)


def optional_query(request: Any, name: str) -> Any:
    """A query parameter's value, or None when absent."""
    return getattr(request, name) if request.HasField(name) else None


def query_moment(value: str | None, name: str) -> dt.datetime | None:
    """A date-time query filter (RFC 3339; UTC when it names no offset); malformed is a validation error
    naming the parameter."""
    if value is None:
        return None
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ValidationError(
            FieldError(("query", name), "Input should be a date-time (RFC 3339)", "datetime_parsing")
        ) from None
    # In UTC: SQLite compares the stored text, which is UTC without its offset.
    return moment.astimezone(dt.UTC) if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def query_uuid(value: str | None, name: str) -> uuid.UUID | None:
    """A UUID query filter; malformed is a validation error naming the parameter."""
    if value is None:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        raise ValidationError(
            FieldError(("query", name), "Input should be a valid UUID", "uuid_parsing")
        ) from None


def query_choice(value: str | None, name: str, allowed: tuple[str, ...]) -> str | None:
    """A query filter restricted to `allowed` values."""
    if value is not None and value not in allowed:
        choices = ", ".join(f"'{v}'" for v in allowed)
        raise ValidationError(FieldError(("query", name), f"Input should be one of {choices}", "enum"))
    return value
