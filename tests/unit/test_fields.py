"""Input parsing against proto field rules: unknown keys, nulls, types, formats, bounds."""

import pytest
from google.protobuf import struct_pb2
from hydra.crm.v1 import leads_pb2

from services.common.errors import InvalidPathId, ValidationError
from services.common.fields import nullable, parse_input, parse_limit, parse_path_id

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
    assert caught.value.support_body() == {"error": "Lead not found.", "code": "not_found"}
    assert caught.value.core_http_status() == 422
    assert caught.value.core_body()["detail"][0]["loc"] == ["path", "id"]


def test_nullable_values() -> None:
    assert nullable(None).WhichOneof("kind") == "null_value"
    assert nullable("x").string_value == "x"
