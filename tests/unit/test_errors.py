"""One mapping from domain errors to each surface's status and body."""

import json

import grpc

from services.common.errors import (
    MAX_ERROR_BODY_BYTES,
    MAX_LISTED_ERRORS,
    Conflict,
    FieldError,
    ForbiddenScope,
    NotFound,
    RateLimited,
    ValidationError,
)
from services.common.surfaces import CORE, SUPPORT, SURFACES, render


def test_forbidden_scope_uses_the_seed_message() -> None:
    rendered = render(ForbiddenScope("crm:write", frozenset({"crm:read"})), SUPPORT)
    assert rendered.http_status == 403
    assert json.loads(rendered.body) == {
        "error": "Missing required scope(s): crm:write. Your key has [crm:read].",
        "code": "forbidden_scope",
    }


def test_validation_is_400_on_support_and_422_detail_list_on_core() -> None:
    error = ValidationError(
        [FieldError(("body", "email"), "value is not a valid email address", "value_error")]
    )
    support, core = render(error, SUPPORT), render(error, CORE)
    assert (support.http_status, json.loads(support.body)["code"]) == (400, "validation_error")
    assert core.http_status == 422
    assert json.loads(core.body) == {
        "detail": [
            {"loc": ["body", "email"], "msg": "value is not a valid email address", "type": "value_error"}
        ]
    }
    assert core.grpc_status == grpc.StatusCode.INVALID_ARGUMENT


def test_conflict_carries_extra_fields_on_support() -> None:
    rendered = render(Conflict("Account has contacts.", code="fk_blocked", blockers={"contacts": 2}), SUPPORT)
    assert rendered.http_status == 409
    assert json.loads(rendered.body) == {
        "error": "Account has contacts.",
        "code": "fk_blocked",
        "blockers": {"contacts": 2},
    }


def test_core_bodies_are_fastapi_detail() -> None:
    assert json.loads(render(NotFound("Instance not found"), CORE).body) == {"detail": "Instance not found"}
    assert render(RateLimited("Rate limit exceeded"), CORE).http_status == 429


def test_bodies_are_ascii_for_metadata() -> None:
    assert render(NotFound("Café introuvable"), SUPPORT).body.isascii()


def many_errors(count: int, key: str = "title") -> ValidationError:
    return ValidationError(
        [FieldError(("body", "knowledge", i, key), "Field required", "missing") for i in range(count)]
    )


def test_a_long_error_list_names_the_first_errors_and_counts_the_rest() -> None:
    error = many_errors(998)
    core = json.loads(render(error, CORE).body)["detail"]
    assert core[0] == {"loc": ["body", "knowledge", 0, "title"], "msg": "Field required", "type": "missing"}
    listed = core[:-1]
    assert 0 < len(listed) <= MAX_LISTED_ERRORS
    assert core[-1] == {
        "loc": [],
        "msg": f"{998 - len(listed)} more errors not listed",
        "type": "too_many_errors",
    }
    support = json.loads(render(error, SUPPORT).body)
    assert support["code"] == "validation_error"
    assert support["error"].startswith("knowledge.0.title: Field required; knowledge.1.title")
    assert support["error"].endswith("more errors")
    assert len(render(error, SUPPORT).message) < 2100  # grpc-message too


def test_error_bodies_stay_small_whatever_the_client_sent() -> None:
    huge_key = "k" * 100_000
    for error in (many_errors(10_000, huge_key), many_errors(3, "\u00e9" * 50_000)):
        for surface in SURFACES:
            rendered = render(error, surface)
            assert len(rendered.body) <= MAX_ERROR_BODY_BYTES
            assert rendered.body.isascii()
    clipped = json.loads(render(many_errors(1, huge_key), CORE).body)["detail"][0]["loc"][-1]
    assert clipped.startswith("kkk") and len(clipped) == 100
    # An error that is not a field list, with a message or extra field no trailer could carry.
    rendered = render(Conflict("x" * 1_000_000, code="fk_blocked", blockers={"y": "z" * 100_000}), SUPPORT)
    assert len(rendered.body) <= MAX_ERROR_BODY_BYTES
    assert json.loads(rendered.body)["code"] == "fk_blocked"
