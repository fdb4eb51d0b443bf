"""The Envoy config is derived from the protos: every binding routed once, with its policy."""

from typing import Any

import pytest
from hydra.options.v1 import options_pb2

from edge import envoy_config
from edge.bindings import Binding, load_bindings, template_regex
from edge.envoy_config import EdgeSettings, render

SETTINGS = EdgeSettings(
    listen_host="127.0.0.1",
    port=8080,
    admin_port=9901,
    upstreams={
        name: ["127.0.0.1:1"] for name in ("authz", "gatekeeper", "crm", "tickets", "instances", "public")
    },
)


def routes() -> list[dict[str, Any]]:
    config = render(SETTINGS, load_bindings())
    manager = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    return manager["route_config"]["virtual_hosts"][0]["routes"]


def check_headers(route: dict[str, Any]) -> dict[str, str]:
    """The headers Envoy adds to this route's check request."""
    settings = route["typed_per_filter_config"]["envoy.filters.http.ext_authz"]["check_settings"]
    added = settings["http_service"]["authorization_request"]["headers_to_add"]
    return {h["key"]: h["value"] for h in added}


def test_every_lead_binding_has_one_route_with_its_scope() -> None:
    by_name = {r["name"]: r for r in routes()}
    expected = {
        "hydra.crm.v1.LeadService.ListLeads:GET": "crm:read",
        "hydra.crm.v1.LeadService.CreateLead:POST": "crm:write",
        "hydra.crm.v1.LeadService.GetLead:GET": "crm:read",
        "hydra.crm.v1.LeadService.UpdateLead:PATCH": "crm:write",
        "hydra.crm.v1.LeadService.DeleteLead:DELETE": "crm:write",
    }
    for name, scope in expected.items():
        assert check_headers(by_name[name]) == {
            "x-hydra-route-auth": "support_key",
            "x-hydra-route-scope": scope,
        }
        assert by_name[name]["route"]["cluster"] == "crm"


def test_success_statuses_are_declared_on_routes_not_sent_by_services() -> None:
    by_name = {r["name"]: r for r in routes()}

    def declared(name: str) -> str | None:
        return (
            by_name[name]
            .get("metadata", {})
            .get("filter_metadata", {})
            .get("envoy.filters.http.lua", {})
            .get("success_status")
        )

    assert declared("hydra.crm.v1.LeadService.CreateLead:POST") == "201"
    assert declared("hydra.crm.v1.LeadService.DeleteLead:DELETE") == "204"
    assert declared("hydra.public.v1.AnalyticsService.TrackPageView:POST") == "204"
    for name in (
        "hydra.crm.v1.LeadService.GetLead:GET",
        "hydra.crm.v1.LeadService.UpdateLead:PATCH",
        "hydra.public.v1.FormService.SubmitForm:POST",
        "hydra.public.v1.WidgetService.Chat:POST",
    ):
        assert declared(name) is None, name


def test_unmatched_paths_end_in_not_found_routes_without_auth() -> None:
    last = routes()[-2:]
    assert [r["match"]["prefix"] for r in last] == ["/api/", "/"]
    assert all(r["direct_response"]["status"] == 404 for r in last)


def test_template_regex() -> None:
    assert template_regex("/api/v1/leads/{id}") == r"^/api/v1/leads/[^/]+$"
    assert template_regex("/v1/files/{name=**}") == r"^/v1/files/.+$"


def test_public_route_strips_identity_headers_and_limits_per_ip() -> None:
    policy = options_pb2.AccessPolicy(
        auth=options_pb2.AUTH_MODE_PUBLIC,
        rate_limit=options_pb2.RateLimitPolicy(
            key=options_pb2.RATE_LIMIT_KEY_CLIENT_IP, requests_per_minute=5, name="forms"
        ),
    )
    route = envoy_config.route(
        Binding("x.Y.Z", "x.Y", "public", "POST", "/v1/public/forms/submit", policy, False), SETTINGS
    )
    assert "x-hydra-tenant-id" in route["request_headers_to_remove"]
    assert route["typed_per_filter_config"]["envoy.filters.http.ext_authz"]["disabled"] is True
    actions = route["route"]["rate_limits"][0]["actions"]
    assert actions == [
        {"generic_key": {"descriptor_key": "policy", "descriptor_value": "forms:5"}},
        {"remote_address": {}},
    ]


def test_streaming_routes_have_no_timeout() -> None:
    policy = options_pb2.AccessPolicy(auth=options_pb2.AUTH_MODE_WIDGET_TOKEN)
    route = envoy_config.route(
        Binding("x.Y.Chat", "x.Y", "public", "POST", "/v1/public/widget/{instance_id}/chat", policy, True),
        SETTINGS,
    )
    assert route["route"]["timeout"] == "0s"
    assert check_headers(route)["x-hydra-route-instance-segment"] == "3"


def test_the_widget_route_limits_per_client_ip_and_instance_before_the_token() -> None:
    (chat,) = [r for r in routes() if r["name"] == "hydra.public.v1.WidgetService.Chat:POST"]
    headers = check_headers(chat)
    assert headers["x-hydra-route-prior-limits"] == (
        "client_ip:WidgetChatPerIp:30,instance:WidgetChatPerInstance:1200"
    )
    # The address Envoy sees (trusted hops honoured) goes to the check and upstream, never the client's.
    assert headers["x-hydra-client-ip"] == "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"
    assert chat["request_headers_to_add"] == [
        {
            "header": {"key": "x-hydra-client-ip", "value": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"},
            "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
        }
    ]
    # Routes without per-IP windows carry neither.
    (leads,) = [r for r in routes() if r["name"] == "hydra.crm.v1.LeadService.ListLeads:GET"]
    added = [h["header"]["key"] for h in leads.get("request_headers_to_add", [])]
    assert "x-hydra-client-ip" not in check_headers(leads) and "x-hydra-client-ip" not in added


def test_a_per_instance_window_needs_a_widget_route() -> None:
    policy = options_pb2.AccessPolicy(
        auth=options_pb2.AUTH_MODE_CORE_KEY,
        prior_rate_limits=[
            options_pb2.RateLimitPolicy(
                key=options_pb2.RATE_LIMIT_KEY_INSTANCE, requests_per_minute=5, name="x"
            )
        ],
    )
    with pytest.raises(ValueError, match="per instance"):
        envoy_config.route(Binding("x.Y.Z", "x.Y", "public", "GET", "/v1/z", policy, False), SETTINGS)
