"""The Envoy config is derived from the protos: every binding routed once, with its policy."""

import dataclasses
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import descriptor_pb2
from hydra.options.v1 import options_pb2

from edge import envoy_config
from edge.bindings import Binding, load_bindings, template_regex
from edge.envoy_config import EdgeSettings, render
from hydractl.stack import envoy_binary
from services.common import config
from services.common.access import MethodAccess, parse_access
from services.common.paging import PAGE_JSON_BYTES

SETTINGS = EdgeSettings(
    listen_host="127.0.0.1",
    port=8080,
    admin_port=9901,
    upstreams={name: ["127.0.0.1:1"] for name in config.DEFAULT_PORTS},
)


def access_of(
    policy: options_pb2.AccessPolicy, surface: int = options_pb2.SURFACE_CORE, rpc: str = "/x.Y/Z"
) -> MethodAccess:
    """The parsed policy of an RPC with these options, in a service of `surface`."""
    method, service = descriptor_pb2.MethodOptions(), descriptor_pb2.ServiceOptions()
    method.Extensions[options_pb2.access].CopyFrom(policy)
    service.Extensions[options_pb2.surface] = surface
    return parse_access(rpc, method, service)


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
            "x-hydra-route-surface": "support",
            "x-hydra-route-auth": "support_key",
            "x-hydra-route-scope": scope,
            "x-hydra-client-ip": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
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
    last = [r for r in routes() if r["name"].startswith("not_found:")]
    assert routes()[-len(last) :] == last  # after every other route
    prefixes = [r["match"]["prefix"] for r in last]
    assert prefixes == sorted(prefixes, key=len, reverse=True)  # longest first
    assert {"/v1/public/", "/api/", "/v1/", "/v1/workflows", "/v1/mcp/dep_"} <= set(prefixes)
    assert prefixes[-1] == "/"
    assert all(r["direct_response"]["status"] == 404 for r in last)
    by_prefix = {
        r["match"]["prefix"]: json.loads(r["direct_response"]["body"]["inline_string"]) for r in last
    }
    assert by_prefix["/v1/workflows"]["error"]["code"] == "NOT_FOUND"
    assert by_prefix["/v1/"] == {"detail": "Not Found"}


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
    access = access_of(policy, options_pb2.SURFACE_PUBLIC)
    route = envoy_config.route(
        Binding("x.Y.Z", "x.Y", "public", "POST", "/v1/public/forms/submit", access, False), SETTINGS
    )
    assert "x-hydra-tenant-id" in route["request_headers_to_remove"]
    assert route["typed_per_filter_config"]["envoy.filters.http.ext_authz"]["disabled"] is True
    actions = route["route"]["rate_limits"][0]["actions"]
    assert actions == [
        {"generic_key": {"descriptor_key": "policy", "descriptor_value": "forms:5"}},
        {"generic_key": {"descriptor_key": "surface", "descriptor_value": "public"}},
        {"remote_address": {}},
    ]


def test_streaming_routes_have_no_response_timeout_but_their_own_bounds() -> None:
    access = access_of(
        options_pb2.AccessPolicy(auth=options_pb2.AUTH_MODE_WIDGET_TOKEN), options_pb2.SURFACE_PUBLIC
    )
    route = envoy_config.route(
        Binding("x.Y.Chat", "x.Y", "public", "POST", "/v1/public/widget/{instance_id}/chat", access, True),
        SETTINGS,
    )
    assert route["route"]["timeout"] == "0s"
    assert route["route"]["idle_timeout"] == "60s"
    assert route["route"]["max_stream_duration"] == {"max_stream_duration": "300s"}
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
    # Every check knows the client's address (for the unknown-key limit); only routes with per-IP
    # windows send it upstream.
    (leads,) = [r for r in routes() if r["name"] == "hydra.crm.v1.LeadService.ListLeads:GET"]
    assert check_headers(leads)["x-hydra-client-ip"] == "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"
    added = [h["header"]["key"] for h in leads.get("request_headers_to_add", [])]
    assert "x-hydra-client-ip" not in added


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
        access_of(policy)


def manager() -> dict[str, Any]:
    config = render(SETTINGS, load_bindings())
    return config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]


def test_slow_clients_meet_deliberate_timeouts() -> None:
    settings = EdgeSettings.from_env({"HYDRA_EDGE_REQUEST_HEADERS_TIMEOUT_SECONDS": "3"})
    hcm = render(settings, load_bindings())["static_resources"]["listeners"][0]["filter_chains"][0]
    typed = hcm["filters"][0]["typed_config"]
    assert typed["request_headers_timeout"] == "3s"
    assert typed["request_timeout"] == "60s"
    assert typed["stream_idle_timeout"] == "30s"
    assert typed["common_http_protocol_options"] == {"idle_timeout": "60s"}
    assert typed["http2_protocol_options"]["max_concurrent_streams"] == 100


def test_envoy_guards_its_heap_and_its_connections() -> None:
    settings = EdgeSettings.from_env({"HYDRA_EDGE_MAX_HEAP_MB": "512", "HYDRA_EDGE_MAX_CONNECTIONS": "300"})
    config = render(settings, load_bindings())
    overload = config["overload_manager"]
    monitors = {m["name"]: m["typed_config"] for m in overload["resource_monitors"]}
    assert monitors["envoy.resource_monitors.fixed_heap"]["max_heap_size_bytes"] == 512 * 1024 * 1024
    limit = monitors["envoy.resource_monitors.global_downstream_max_connections"]
    assert limit["max_active_downstream_connections"] == 300
    thresholds = {
        a["name"].rsplit(".", 1)[1]: a["triggers"][0]["threshold"]["value"] for a in overload["actions"]
    }
    assert thresholds["shrink_heap"] < thresholds["stop_accepting_requests"] < 1
    assert config["admin"]["ignore_global_conn_limit"] is True


@pytest.mark.parametrize(
    ("name", "dropped"),
    [
        ("x-trace~id", True),
        ("x-a*b", True),
        ("x-a!b", True),
        ("~", True),
        ("X-Upper", True),  # Envoy lower-cases names; one it did not would not be gRPC metadata either
        ("x-trace-bin", True),
        ("grpc-timeout", True),
        ("grpc-encoding", True),
        (":path", False),
        (":authority", False),
        ("x-request-id", False),
        ("content-type", False),
        ("x_under.score-1", False),
        ("authorization", False),
    ],
)
def test_headers_the_services_cannot_carry_are_dropped(name: str, dropped: bool) -> None:
    assert bool(re.fullmatch(envoy_config.UNCARRIABLE_HEADERS, name)) is dropped
    filters = {f["name"]: f for f in manager()["http_filters"]}
    mutation = filters["envoy.filters.http.header_mutation"]["typed_config"]["mutations"]
    matcher = mutation["request_mutations"][0]["remove_on_match"]["key_matcher"]["safe_regex"]["regex"]
    assert matcher == envoy_config.UNCARRIABLE_HEADERS


def test_bodies_are_limited_per_route_by_what_the_field_rules_allow() -> None:
    by_name = {r["name"]: r for r in routes()}
    create = by_name["hydra.instances.v1.InstanceService.CreateInstance:POST"]["typed_per_filter_config"]
    # 500 entries of 200 + 20,000 characters, each as a 6-byte escape at worst, plus the other fields.
    assert 500 * 20_200 * 6 < create["large_bodies"]["buffer"]["max_request_bytes"] < 500 * 20_200 * 6 * 1.01
    assert create["envoy.filters.http.buffer"]["disabled"] is True  # buffered only once the key checked
    lead = by_name["hydra.crm.v1.LeadService.CreateLead:POST"]["typed_per_filter_config"]
    assert "large_bodies" not in lead and "envoy.filters.http.buffer" not in lead
    filters = [f["name"] for f in manager()["http_filters"]]
    assert filters.index("envoy.filters.http.buffer") < filters.index("envoy.filters.http.ext_authz")
    assert filters.index("envoy.filters.http.ext_authz") < filters.index("large_bodies")
    assert filters.index("large_bodies") < filters.index("envoy.filters.http.grpc_json_transcoder")


def test_the_transcoder_carries_the_largest_legal_answer() -> None:
    bindings = load_bindings()
    transcoder = {f["name"]: f for f in manager()["http_filters"]}["envoy.filters.http.grpc_json_transcoder"]
    limit = transcoder["typed_config"]["max_response_body_size"]
    largest_instance = max(b.body_bytes or 0 for b in bindings)
    assert largest_instance >= 500 * 20_200 * 6
    assert limit > largest_instance and limit > PAGE_JSON_BYTES


def test_body_bounds_follow_the_input_rules() -> None:
    bounds = {(b.rpc.rsplit(".", 1)[1], b.method): b.body_bytes for b in load_bindings()}
    assert bounds[("CreateLead", "POST")] == bounds[("UpdateLead", "PATCH")]
    assert 5_000 < (bounds[("CreateLead", "POST")] or 0) < 10_000  # a few fields of at most 320 characters
    assert bounds[("CreateChannel", "POST")] is None  # config values are not bounded by the rules
    assert bounds[("GetLead", "GET")] is None


def test_the_config_is_valid_for_the_real_envoy(tmp_path: Path) -> None:
    path = tmp_path / "envoy.yaml"
    path.write_text(json.dumps(render(SETTINGS, load_bindings())))
    argv = [envoy_binary(), "--mode", "validate", "-c", str(path)]
    done = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_stats_listener_serves_only_envoys_prometheus_statistics(tmp_path: Path) -> None:
    rendered = render(dataclasses.replace(SETTINGS, stats_address=("127.0.0.1", 9902)), load_bindings())
    (stats,) = [
        listener for listener in rendered["static_resources"]["listeners"] if listener["name"] == "stats"
    ]
    manager = stats["filter_chains"][0]["filters"][0]["typed_config"]
    routes = manager["route_config"]["virtual_hosts"][0]["routes"]
    assert (
        routes[0]["match"]["path"] == "/stats/prometheus" and routes[0]["route"]["cluster"] == "envoy_admin"
    )
    assert routes[1]["direct_response"]["status"] == 404  # the rest of the admin interface stays closed
    path = tmp_path / "envoy.yaml"
    path.write_text(json.dumps(rendered))
    done = subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    plain = render(SETTINGS, load_bindings())["static_resources"]["listeners"]
    assert [listener["name"] for listener in plain] == ["edge"]


def valid_for_envoy(rendered: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "envoy.yaml"
    path.write_text(json.dumps(rendered))
    argv = [envoy_binary(), "--mode", "validate", "-c", str(path)]
    done = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def manager_of(rendered: dict[str, Any]) -> dict[str, Any]:
    (edge,) = [li for li in rendered["static_resources"]["listeners"] if li["name"] == "edge"]
    return edge["filter_chains"][0]["filters"][0]["typed_config"]


@pytest.mark.parametrize("url", ["http://otel-collector:4317", "https://collector.example.com"])
def test_with_an_otlp_endpoint_the_edge_traces_and_names_requests_by_their_trace(
    url: str, tmp_path: Path
) -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": url, "OTEL_BSP_SCHEDULE_DELAY": "250"}
    settings = EdgeSettings.from_env(env)
    rendered = render(settings, load_bindings())
    manager = manager_of(rendered)
    assert manager["tracing"]["provider"]["name"] == "envoy.tracers.opentelemetry"
    first = manager["http_filters"][0]["typed_config"]["mutations"]["request_mutations"][0]["append"]
    assert first["header"] == {"key": "x-request-id", "value": "%TRACE_ID%"}
    (collector,) = [
        c for c in rendered["static_resources"]["clusters"] if c["name"] == envoy_config.COLLECTOR
    ]
    address = collector["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
    assert address["socket_address"]["port_value"] == 4317  # OTLP's gRPC port, when the URL names none
    assert ("transport_socket" in collector) == url.startswith("https:")
    runtime = rendered["layered_runtime"]["layers"][0]["static_layer"]
    assert runtime == {"tracing.opentelemetry.flush_interval_ms": 250}
    valid_for_envoy(rendered, tmp_path)


def test_without_an_endpoint_the_edge_does_not_trace_and_drops_a_clients_trace_context() -> None:
    rendered = render(SETTINGS, load_bindings())
    manager = manager_of(rendered)
    assert "tracing" not in manager and "layered_runtime" not in rendered
    assert manager["http_filters"][0]["name"] != "name_requests_by_trace"
    dropped = manager["early_header_mutation_extensions"][0]["typed_config"]["mutations"]
    assert [m["remove"] for m in dropped] == ["x-request-id", "traceparent", "tracestate"]


@pytest.mark.parametrize(
    ("sampler", "arg", "percent"),
    [
        (None, None, 100.0),
        ("parentbased_traceidratio", "0.05", 5.0),
        ("traceidratio", None, 100.0),
        ("parentbased_always_off", None, 0.0),
    ],
)
def test_the_edge_samples_as_opentelemetrys_sampler_settings_say(
    sampler: str | None, arg: str | None, percent: float
) -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}
    env |= {"OTEL_TRACES_SAMPLER": sampler} if sampler else {}
    env |= {"OTEL_TRACES_SAMPLER_ARG": arg} if arg else {}
    manager = manager_of(render(EdgeSettings.from_env(env), load_bindings()))
    assert manager["tracing"]["random_sampling"] == {"value": percent}


@pytest.mark.parametrize("arg", ["1.5", "-0.1", "often"])
def test_a_sampling_ratio_outside_0_to_1_is_refused(arg: str) -> None:
    env = {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": arg}
    with pytest.raises(config.ConfigError, match="OTEL_TRACES_SAMPLER_ARG"):
        EdgeSettings.from_env(env)


@pytest.mark.parametrize("url", ["ftp://collector:4317", "http://"])
def test_an_endpoint_that_is_not_http_is_refused(url: str) -> None:
    with pytest.raises(config.ConfigError, match="OTLP endpoint"):
        EdgeSettings.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": url})
