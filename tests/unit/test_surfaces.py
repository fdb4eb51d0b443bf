"""Surfaces are declared once and each route's comes from its proto: the parse refuses what contradicts."""

import json

import pytest
from google.protobuf import descriptor_pb2
from hydra.options.v1 import options_pb2

from edge.bindings import load_bindings
from services.common.access import parse_access
from services.common.errors import Conflict, FieldError, NotFound, PlanLimitExceeded, ValidationError
from services.common.surfaces import (
    CORE,
    FALLBACK,
    MARKETPLACE,
    PUBLIC,
    SUPPORT,
    SURFACES,
    by_prefix,
    render,
    surface_at,
)


def options(
    policy: options_pb2.AccessPolicy, surface: int
) -> tuple[descriptor_pb2.MethodOptions, descriptor_pb2.ServiceOptions]:
    method, service = descriptor_pb2.MethodOptions(), descriptor_pb2.ServiceOptions()
    method.Extensions[options_pb2.access].CopyFrom(policy)
    if surface:
        service.Extensions[options_pb2.surface] = surface
    return method, service


def test_every_route_lies_under_its_surfaces_prefix_and_takes_its_credentials() -> None:
    bindings = load_bindings()
    assert {b.access.surface for b in bindings} == {SUPPORT, CORE, PUBLIC, MARKETPLACE}
    for binding in bindings:
        surface = binding.access.surface
        assert surface_at(binding.template) is surface
        assert binding.access.credential in surface.credentials
    public = {b.template for b in bindings if b.access.surface is PUBLIC}
    assert public == {
        "/v1/public/analytics/track",
        "/v1/public/forms/submit",
        "/v1/public/widget/{instance_id}/chat",
        "/v1/public/widget/{instance_id}/conversations/{conversation_id}/messages",
    }


def test_a_route_takes_its_services_surface_unless_its_access_option_names_another() -> None:
    policy = options_pb2.AccessPolicy(auth=options_pb2.AUTH_MODE_CORE_KEY)
    assert parse_access("/x.Y/Z", *options(policy, options_pb2.SURFACE_CORE)).surface is CORE
    policy = options_pb2.AccessPolicy(auth=options_pb2.AUTH_MODE_PUBLIC, surface=options_pb2.SURFACE_PUBLIC)
    assert parse_access("/x.Y/Z", *options(policy, options_pb2.SURFACE_CORE)).surface is PUBLIC


def test_a_route_without_a_surface_or_with_credentials_its_surface_does_not_take_is_refused() -> None:
    policy = options_pb2.AccessPolicy(auth=options_pb2.AUTH_MODE_CORE_KEY)
    with pytest.raises(ValueError, match="surface"):
        parse_access("/x.Y/Z", *options(policy, 0))
    with pytest.raises(ValueError, match="support surface takes no auth mode"):
        parse_access("/x.Y/Z", *options(policy, options_pb2.SURFACE_SUPPORT))
    internal = options_pb2.AccessPolicy(auth=options_pb2.AUTH_MODE_INTERNAL)  # any service may hold one
    assert parse_access("/x.Y/Z", *options(internal, options_pb2.SURFACE_SUPPORT)).surface is SUPPORT


def test_paths_find_their_surface_by_the_longest_prefix() -> None:
    claims = [prefix for prefix, _ in by_prefix()]
    assert claims.index("/v1/public/") < claims.index("/v1/") and claims.index(
        "/v1/workflows"
    ) < claims.index("/v1/")
    assert surface_at("/v1/public/forms/submit") is PUBLIC
    assert surface_at("/v1/workflows/wf_1/fork") is MARKETPLACE
    assert surface_at("/v1/instances") is CORE and surface_at("/api/v1/leads") is SUPPORT
    assert surface_at("/elsewhere") is FALLBACK
    assert {s.name for s in SURFACES} == {"support", "core", "public", "marketplace", "internal"}


def test_each_envelope_shapes_the_same_error_its_own_way() -> None:
    invalid = ValidationError(FieldError(("body", "name"), "Field required", "missing"))
    assert render(invalid, SUPPORT).http_status == 400 and render(invalid, CORE).http_status == 422
    assert (
        render(NotFound("Lead not found."), SUPPORT).body
        == '{"error": "Lead not found.", "code": "not_found"}'
    )
    assert render(NotFound("Instance not found"), PUBLIC).body == '{"detail": "Instance not found"}'
    assert SUPPORT.envelope.reply(405, "method_not_allowed", "Method not allowed.") == {
        "error": "Method not allowed.",
        "code": "method_not_allowed",
    }
    assert CORE.envelope.reply(405, "method_not_allowed", "Method not allowed.") == {
        "detail": "Method Not Allowed"
    }


def test_the_marketplace_answers_in_its_own_envelope_with_upper_case_codes() -> None:
    invalid = ValidationError(
        FieldError(("body", "manifest", "steps", 0, "name"), "Field required", "missing")
    )
    rendered = render(invalid, MARKETPLACE)
    assert rendered.http_status == 400
    assert json.loads(rendered.body) == {
        "success": False,
        "error": {
            "code": "VALIDATION_ERROR",
            "message": "manifest.steps.0.name: Field required",
            "details": {
                "errors": [
                    {
                        "loc": ["body", "manifest", "steps", 0, "name"],
                        "msg": "Field required",
                        "type": "missing",
                    }
                ]
            },
        },
    }
    limited = render(PlanLimitExceeded("The free plan allows 3 workflows.", limit=3), MARKETPLACE)
    assert limited.http_status == 402
    assert json.loads(limited.body)["error"] == {
        "code": "PLAN_LIMIT_EXCEEDED",
        "message": "The free plan allows 3 workflows.",
        "details": {"limit": 3},
    }
    blocked = json.loads(render(Conflict("In use.", code="fk_blocked"), MARKETPLACE).body)
    assert blocked["error"]["code"] == "CONFLICT"
    assert MARKETPLACE.envelope.reply(404, "not_found", "Not found.") == {
        "success": False,
        "error": {"code": "NOT_FOUND", "message": "Not found.", "details": {}},
    }
    assert MARKETPLACE.envelope.reply(500, "server_error", "Internal server error.")["error"]["code"] == (
        "INTERNAL_ERROR"
    )


def test_a_marketplace_validation_error_lists_what_fits_and_counts_the_rest() -> None:
    many = ValidationError([FieldError(("body", f"f{n}"), "x" * 250, "string_too_long") for n in range(400)])
    rendered = render(many, MARKETPLACE)
    details = json.loads(rendered.body)["error"]["details"]
    assert 0 < len(details["errors"]) < 400 and details["unlisted"] == 400 - len(details["errors"])
    assert len(rendered.body) < 16 * 1024
