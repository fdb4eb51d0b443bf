"""One mapping from domain errors to each surface's status and body."""

import json

import grpc

from services.common.errors import (
    Conflict,
    FieldError,
    ForbiddenScope,
    NotFound,
    RateLimited,
    Surface,
    ValidationError,
    render,
)


def test_forbidden_scope_uses_the_seed_message() -> None:
    rendered = render(ForbiddenScope("crm:write", frozenset({"crm:read"})), Surface.SUPPORT)
    assert rendered.http_status == 403
    assert json.loads(rendered.body) == {
        "error": "Missing required scope(s): crm:write. Your key has [crm:read].",
        "code": "forbidden_scope",
    }


def test_validation_is_400_on_support_and_422_detail_list_on_core() -> None:
    error = ValidationError(
        [FieldError(("body", "email"), "value is not a valid email address", "value_error")]
    )
    support, core = render(error, Surface.SUPPORT), render(error, Surface.CORE)
    assert (support.http_status, json.loads(support.body)["code"]) == (400, "validation_error")
    assert core.http_status == 422
    assert json.loads(core.body) == {
        "detail": [
            {"loc": ["body", "email"], "msg": "value is not a valid email address", "type": "value_error"}
        ]
    }
    assert core.grpc_status == grpc.StatusCode.INVALID_ARGUMENT


def test_conflict_carries_extra_fields_on_support() -> None:
    rendered = render(
        Conflict("Account has contacts.", code="fk_blocked", blockers={"contacts": 2}), Surface.SUPPORT
    )
    assert rendered.http_status == 409
    assert json.loads(rendered.body) == {
        "error": "Account has contacts.",
        "code": "fk_blocked",
        "blockers": {"contacts": 2},
    }


def test_core_bodies_are_fastapi_detail() -> None:
    assert json.loads(render(NotFound("Instance not found"), Surface.CORE).body) == {
        "detail": "Instance not found"
    }
    assert render(RateLimited("Rate limit exceeded"), Surface.CORE).http_status == 429


def test_bodies_are_ascii_for_metadata() -> None:
    assert render(NotFound("Café introuvable"), Surface.SUPPORT).body.isascii()
