"""Surfaces are declared once and each route's comes from its proto: the parse refuses what contradicts."""

import pytest
from google.protobuf import descriptor_pb2
from hydra.options.v1 import options_pb2

from edge.bindings import load_bindings
from services.common.access import parse_access
from services.common.errors import FieldError, NotFound, ValidationError
from services.common.surfaces import CORE, PUBLIC, SUPPORT, SURFACES, by_prefix, render


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
    assert {b.access.surface for b in bindings} == {SUPPORT, CORE, PUBLIC}
    for binding in bindings:
        surface = binding.access.surface
        assert surface.prefix is not None and binding.template.startswith(surface.prefix)
        assert binding.access.credential in surface.credentials
    public = {b.template for b in bindings if b.access.surface is PUBLIC}
    assert public == {
        "/v1/public/analytics/track",
        "/v1/public/forms/submit",
        "/v1/public/widget/{instance_id}/chat",
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
    assert [s.prefix for s in by_prefix()] == ["/v1/public/", "/api/", "/v1/"]
    assert {s.name for s in SURFACES} == {"support", "core", "public", "internal"}


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
