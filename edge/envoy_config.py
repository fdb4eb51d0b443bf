"""Generates the Envoy config from the proto descriptor set: one route per HTTP binding, nothing by hand."""

from __future__ import annotations

import argparse
import functools
import json
import re
import sys
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.options.v1 import options_pb2

from edge import openapi
from edge.bindings import DESCRIPTOR_SET, JSON_BYTES_PER_CHAR, ROOT, Binding, load_bindings, template_regex
from edge.gatekeeper.http_check import MAX_BODY_BYTES, PARTIAL_BODY_HEADER, ROUTE_HEADER_PREFIX
from edge.gatekeeper.issuer import JWKS_PATH, OidcSettings
from services.common import config, tracing
from services.common.access import BY_CLIENT_IP
from services.common.errors import RATE_LIMIT_EXCEEDED, RateLimited
from services.common.identity import CLIENT_IP_HEADER, IDENTITY_HEADERS, INTERNAL_TOKEN_HEADER
from services.common.paging import PAGE_JSON_BYTES
from services.common.surfaces import (
    CREDENTIALS,
    FALLBACK,
    ID_TOKEN,
    REQUEST_ID_HEADER,
    SURFACES,
    Credential,
    Surface,
    by_prefix,
    identified,
    surface_at,
)

AuthMode = options_pb2.AuthMode
RateLimitKey = options_pb2.RateLimitKey
LUA_FILTER = Path(__file__).resolve().parent / "envelope.lua"
GATEKEEPER = "gatekeeper"
AUTHZ = "authz"  # the gatekeeper's HTTP listener for ext_authz checks
_TYPE = "type.googleapis.com/envoy.extensions."
_EXT_AUTHZ = "envoy.filters.http.ext_authz"
_TRANSCODER = "envoy.filters.http.grpc_json_transcoder"
_CORS = "envoy.filters.http.cors"
_LUA = "envoy.filters.http.lua"
_JWT_AUTHN = "envoy.filters.http.jwt_authn"
_ID_TOKEN = "id_token"  # the jwt_authn provider and requirement of routes that take ID tokens
_JWT_FAILURE = "jwt_failure"  # where jwt_authn records why it refused a token
OIDC_JWKS = "oidc_jwks"  # the cluster of a configured provider's JWKS URI
_ID_TOKEN_IF_SENT = "id_token_if_sent"  # routes that take an ID token or none (anonymous MCP clients)
# Routes whose gatekeeper check decides: a verified token's claims, or why it failed, go to the check.
_ID_TOKEN_CHECKED = "id_token_checked"
MCP = "mcp"  # the cluster of deployments' MCP endpoints (HTTP), in the workflows service
MCP_PREFIX = "/v1/mcp/dep_"
COLLECTOR = "otel_collector"  # the OTLP collector Envoy sends its spans to, when tracing
TOOLS = "tools"  # the cluster of the gatekeeper's MCP servers of the keyed APIs (HTTP)
TOOL_PATHS = ("/api/mcp/v1", "/v1/mcp")
_BUFFER = "envoy.filters.http.buffer"
_LARGE_BODIES = "large_bodies"  # a second buffer filter, after the key check, for routes with larger bodies
MIB = 1024 * 1024
# Request headers the services could not carry as gRPC metadata (a name outside [0-9a-z_.-]), binary
# metadata they would have to decode (-bin), and gRPC's own headers (grpc-timeout, grpc-encoding, ...):
# dropped before the transcoder, or grpc answers the whole request with a stream error (a 503).
UNCARRIABLE_HEADERS = r"[^:].*[^-._0-9a-z].*|[^-._0-9a-z:].*|.*-bin|grpc-.*"
_CLIENT_ADDRESS = "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"


def _credential_headers(credentials: Sequence[Credential]) -> list[str]:
    """Every header the credentials travel in, each once, in order."""
    return list(dict.fromkeys(name for credential in credentials for name in credential.headers))


def _every_rate_header() -> list[str]:
    return list(dict.fromkeys(name for surface in SURFACES for name in surface.rate_headers))


def _any_origin_cors() -> dict[str, Any]:
    """Browsers on any site call the surfaces open to any origin; credentials never travel as cookies."""
    open_surfaces = [s for s in SURFACES if s.any_origin]
    credentials = [c for s in open_surfaces for c in s.credentials]
    rate_headers = dict.fromkeys(h for s in open_surfaces for h in s.rate_headers)
    return {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy",
        "allow_origin_string_match": [{"safe_regex": {"regex": ".*"}}],
        "allow_methods": "GET, POST, OPTIONS",
        "allow_headers": ", ".join(["content-type", *_credential_headers(credentials)]),
        "expose_headers": ", ".join(rate_headers),
        "max_age": "86400",
    }


_ANY_ORIGIN_CORS = _any_origin_cors()
_FILTER_CONFIG = "type.googleapis.com/envoy.config.route.v3.FilterConfig"
_EXT_AUTHZ_PER_ROUTE = "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute"
# Envoy's own error replies, in each surface's envelope: (status, code, message).
_LOCAL_REPLIES = [
    (400, "validation_error", "Invalid request: %LOCAL_REPLY_BODY%"),
    # Only jwt_authn answers 401 itself (the gatekeeper's denials keep their own body).
    (401, "unauthorized", "Invalid ID token: %LOCAL_REPLY_BODY%."),
    (404, "not_found", "Not found."),
    (405, "method_not_allowed", "Method not allowed."),
    (408, "server_error", "Request timed out."),
    (413, "validation_error", "Request body too large."),
    (415, "validation_error", "Unsupported media type."),
    (431, "validation_error", "Request headers too large."),
    (500, "server_error", "Internal server error."),
    # The request may have reached the service (a reset after it was sent, a timeout): never "Retry safe".
    (
        502,
        "server_error",
        "Upstream service error; the request may have been applied. Check before retrying.",
    ),
    (503, "server_error", "Service temporarily unavailable; the request may have been applied."),
    (
        504,
        "server_error",
        "Upstream service timed out; the request may have been applied. Check before retrying.",
    ),
]
# 503s Envoy answers without having sent the request anywhere (no healthy replica, no connection,
# circuit breaker, the check service failing): provably nothing happened.
_UNSENT_FLAGS = ["UH", "UF", "UO", "NR", "UAEX"]
_UNSENT_503 = "Service temporarily unavailable. Retry safe."
# The service's deadline (grpc-timeout) is this much shorter than Envoy's route timeout, so the service
# gives up first and its answer says whether the work may have been applied.
DEADLINE_HEADROOM_MS = 1000
# Retried only when the request provably never reached a service (a write is never sent twice).
_RETRY_UNSENT = {
    "retry_on": "connect-failure,refused-stream,reset-before-request",
    "num_retries": 2,
    "retry_host_predicate": [
        {
            "name": "envoy.retry_host_predicates.previous_hosts",
            "typed_config": {
                "@type": _TYPE + "retry.host.previous_hosts.v3.PreviousHostsPredicate",
            },
        }
    ],
    "host_selection_retry_max_attempts": 3,
}
# A read (not a stream) may also be sent again after its replica died with it under way: nothing was
# written, and the next replica answers it.
_RETRY_READS = {**_RETRY_UNSENT, "retry_on": f"{_RETRY_UNSENT['retry_on']},reset"}


@dataclass(frozen=True)
class EdgeSettings:
    """Where Envoy listens and where each upstream cluster's replicas are."""

    listen_host: str
    port: int
    admin_port: int
    upstreams: Mapping[str, Sequence[str]]  # cluster -> ["host:port", ...]
    descriptor_set: Path = DESCRIPTOR_SET
    upstream_timeout_seconds: int = 15
    # Proxies in front of Envoy whose X-Forwarded-For entries are trusted (0: the peer is the client).
    trusted_hops: int = 0
    # Slow clients: a request's headers, the whole request, an idle connection, an idle stream.
    request_headers_timeout_seconds: int = 10
    request_timeout_seconds: int = 60
    idle_timeout_seconds: int = 60
    stream_idle_timeout_seconds: int = 30
    # The widget chat's SSE stream: silent for at most this long, open for at most a turn.
    chat_idle_timeout_seconds: int = 60
    chat_max_seconds: int = 300
    # A request body larger than this is 413, unless its route's field rules allow a larger valid one.
    max_request_bytes: int = MIB
    max_connections: int = 10_000
    max_heap_mb: int = 1024
    internal_token: str | None = None  # sent upstream on every request, in place of any a client sent
    mcp_requests_per_minute: int = 600  # per client address, to every deployment's MCP endpoint
    oidc: OidcSettings | None = None  # who issues the ID tokens marketplace routes take (None: the platform)
    # A listener serving only the admin port's /stats/prometheus (the admin port stays on loopback), for
    # a Prometheus elsewhere: HYDRA_ENVOY_STATS_PORT on HYDRA_METRICS_HOST; None: no such listener.
    stats_address: tuple[str, int] | None = None
    # The OTLP collector (host, port, TLS) Envoy sends its spans to, from OTEL_EXPORTER_OTLP_ENDPOINT as
    # the services read it; None: the edge does not trace.
    collector: tracing.Collector | None = None
    export_delay_ms: int = 5000  # at most this long between exports of spans (OTEL_BSP_SCHEDULE_DELAY)
    sampled_percent: float = 100.0  # of requests traced (OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> EdgeSettings:
        env = config.current_env() if env is None else env
        upstreams = {}
        for name in config.DEFAULT_PORTS:
            listed = env.get(f"HYDRA_{name.upper()}_UPSTREAMS")
            addresses = listed.split(",") if listed else [f"127.0.0.1:{config.service_port(env, name)}"]
            upstreams[name] = [a.strip() for a in addresses if a.strip()]
        return cls(
            listen_host=env.get("HYDRA_EDGE_HOST") or config.host(env),
            port=config.env_int(env, "HYDRA_EDGE_PORT", 8080, minimum=1),
            admin_port=config.env_int(env, "HYDRA_ENVOY_ADMIN_PORT", 9901, minimum=1),
            upstreams=upstreams,
            descriptor_set=Path(env.get("HYDRA_DESCRIPTOR_SET") or DESCRIPTOR_SET),
            trusted_hops=config.env_int(env, "HYDRA_EDGE_TRUSTED_HOPS", 0),
            request_headers_timeout_seconds=_seconds(env, "HYDRA_EDGE_REQUEST_HEADERS_TIMEOUT_SECONDS", 10),
            request_timeout_seconds=_seconds(env, "HYDRA_EDGE_REQUEST_TIMEOUT_SECONDS", 60),
            idle_timeout_seconds=_seconds(env, "HYDRA_EDGE_IDLE_TIMEOUT_SECONDS", 60),
            stream_idle_timeout_seconds=_seconds(env, "HYDRA_EDGE_STREAM_IDLE_TIMEOUT_SECONDS", 30),
            chat_idle_timeout_seconds=_seconds(env, "HYDRA_EDGE_CHAT_IDLE_TIMEOUT_SECONDS", 60),
            chat_max_seconds=_seconds(env, "HYDRA_EDGE_CHAT_MAX_SECONDS", 300),
            max_request_bytes=config.env_int(env, "HYDRA_EDGE_MAX_REQUEST_BYTES", MIB, minimum=1024),
            max_connections=config.env_int(env, "HYDRA_EDGE_MAX_CONNECTIONS", 10_000, minimum=1),
            max_heap_mb=config.env_int(env, "HYDRA_EDGE_MAX_HEAP_MB", 1024, minimum=64),
            stats_address=_stats_address(env),
            collector=tracing.collector(env),
            export_delay_ms=config.env_int(env, "OTEL_BSP_SCHEDULE_DELAY", 5000, minimum=1),
            sampled_percent=tracing.sampled_percent(env),
            internal_token=config.internal_token(env),
            mcp_requests_per_minute=config.env_int(env, "HYDRA_MCP_REQUESTS_PER_MINUTE", 600, minimum=1),
            oidc=OidcSettings.from_env(env),
        )

    def max_answer_bytes(self, bindings: Sequence[Binding]) -> int:
        """The largest answer a route can legally produce, so the transcoder never refuses one.

        A resource is at most what its largest valid body wrote (JSON escapes its characters to at most
        JSON_BYTES_PER_CHAR bytes, as a body may); one written from a body the rules leave unbounded is
        at most that many bytes per byte of the request limit; a list page stops at PAGE_JSON_BYTES
        (or holds a single resource). Plus room for the fields the service adds (ids, times).
        """
        largest = max(
            [self.max_request_bytes * JSON_BYTES_PER_CHAR, PAGE_JSON_BYTES]
            + [b.body_bytes for b in bindings if b.body_bytes]
        )
        return _round_up(largest + MIB, MIB)


def _seconds(env: Mapping[str, str], name: str, default: int) -> int:
    return config.env_int(env, name, default, minimum=1)


def _round_up(value: int, step: int) -> int:
    return -(-value // step) * step


def _address(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


def route_headers(binding: Binding) -> dict[str, str]:
    """The route's policy as the x-hydra-route-* headers Envoy adds to its check request."""
    return {ROUTE_HEADER_PREFIX + k.replace("_", "-"): v for k, v in _route_policy(binding).items()}


def _check_service(
    route_headers: Mapping[str, str], rate_headers: Sequence[str], *, tokens: bool = False
) -> dict[str, Any]:
    """ext_authz's HTTP service: which headers travel to the gatekeeper, upstream and back to the client
    (with `tokens`, also why jwt_authn refused a token, for the check to say)."""
    # Added by Envoy, so a client's own header of that name never reaches the gatekeeper.
    added = {**route_headers, CLIENT_IP_HEADER: _CLIENT_ADDRESS}
    if tokens:
        added[ID_TOKEN.verified_failure or ""] = f"%DYNAMIC_METADATA({_JWT_AUTHN}:{_JWT_FAILURE}:message)%"
    return {
        "server_uri": {"uri": f"http://{AUTHZ}", "cluster": AUTHZ, "timeout": "2s"},
        "authorization_request": {"headers_to_add": [{"key": k, "value": v} for k, v in added.items()]},
        "authorization_response": {
            "allowed_upstream_headers": _exact(IDENTITY_HEADERS),
            "allowed_client_headers": _exact(("content-type", *rate_headers)),
            "allowed_client_headers_on_success": _exact(rate_headers),
        },
    }


def _exact(names: Sequence[str]) -> dict[str, Any]:
    return {"patterns": [{"exact": name} for name in names]}


def _route_policy(binding: Binding) -> dict[str, str]:
    access = binding.access
    values = {"surface": access.surface.name, "auth": access.credential.name, "scope": access.scope}
    if access.rate_limit.requests_per_minute:
        values["requests_per_minute"] = str(access.rate_limit.requests_per_minute)
        values["limit_name"] = access.rate_limit.name
    if access.auth == AuthMode.AUTH_MODE_WIDGET_TOKEN:
        segments = binding.template.strip("/").split("/")
        values["instance_segment"] = str(segments.index("{instance_id}"))
    if access.prior_limits:
        values["prior_limits"] = ",".join(p.encode() for p in access.prior_limits)
    return values


def route(binding: Binding, settings: EdgeSettings) -> dict[str, Any]:
    """The Envoy route of one binding: match, upstream, and the policy the gatekeeper enforces."""
    access = binding.access
    timeout = "0s" if binding.streaming else f"{settings.upstream_timeout_seconds}s"
    entry: dict[str, Any] = {
        "name": f"{binding.rpc}:{binding.method}",
        "match": {
            "safe_regex": {"regex": binding.path_regex},
            "headers": [{"name": ":method", "string_match": {"exact": binding.method}}],
        },
        "route": {
            "cluster": binding.cluster,
            "timeout": timeout,
            "retry_policy": _RETRY_READS
            if binding.method == "GET" and not binding.streaming
            else _RETRY_UNSENT,
        },
    }
    if binding.streaming:
        # Not the stream idle timeout meant for unary calls: a reply may pause while the model thinks.
        entry["route"]["idle_timeout"] = f"{settings.chat_idle_timeout_seconds}s"
        entry["route"]["max_stream_duration"] = {"max_stream_duration": f"{settings.chat_max_seconds}s"}
    per_filter: dict[str, Any] = {}
    if binding.body_bytes and binding.body_bytes > settings.max_request_bytes:
        # Only a caller with a key gets this much of a body buffered.
        per_filter[_BUFFER] = {"@type": _FILTER_CONFIG, "disabled": True}
        per_filter[_LARGE_BODIES] = {
            "@type": _TYPE + "filters.http.buffer.v3.BufferPerRoute",
            "buffer": {"max_request_bytes": binding.body_bytes},
        }
    if binding.success_status != 200:
        # envelope.lua applies it to a 200 from the transcoder; errors carry their own status.
        entry["metadata"] = {"filter_metadata": {_LUA: {"success_status": str(binding.success_status)}}}
    if access.auth == AuthMode.AUTH_MODE_PUBLIC:
        # ext_authz does not run here, so nothing would overwrite identity headers a client sent.
        entry["request_headers_to_remove"] = list(IDENTITY_HEADERS)
        entry["typed_per_filter_config"] = {
            **per_filter,
            _EXT_AUTHZ: {"@type": _EXT_AUTHZ_PER_ROUTE, "disabled": True},
        }
        if access.surface.any_origin:
            entry["typed_per_filter_config"][_CORS] = _ANY_ORIGIN_CORS
        if access.rate_limit.key == RateLimitKey.RATE_LIMIT_KEY_CLIENT_IP:
            limit = access.rate_limit
            entry["route"]["rate_limits"] = [
                _per_client(limit.name, limit.requests_per_minute, access.surface)
            ]
    else:
        if any(p.key == BY_CLIENT_IP for p in access.prior_limits):
            # The client's address as Envoy determined it (trusted hops honoured) goes upstream too, for
            # the service's per-IP stream cap; a client's own header of that name is overwritten.
            entry["request_headers_to_add"] = [
                {
                    "header": {"key": CLIENT_IP_HEADER, "value": _CLIENT_ADDRESS},
                    "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                }
            ]
        check: dict[str, Any] = {
            "http_service": _check_service(
                route_headers(binding),
                access.surface.rate_headers,
                tokens=access.surface.takes(ID_TOKEN.auth),
            )
        }
        if access.surface.checks_json and binding.takes_body:
            # The body goes to the check, which refuses one that is not JSON in the surface's terms. Of a
            # larger body (a route with a higher limit) Envoy sends exactly that many bytes, not always
            # marked partial (a buffer that fills to the byte is not): a body of that length is not judged.
            check["with_request_body"] = {
                "max_request_bytes": MAX_BODY_BYTES,
                "allow_partial_message": True,
            }
        entry["typed_per_filter_config"] = {
            **per_filter,
            _EXT_AUTHZ: {"@type": _EXT_AUTHZ_PER_ROUTE, "check_settings": check},
        }
        if access.surface.any_origin:
            entry["typed_per_filter_config"][_CORS] = _ANY_ORIGIN_CORS
        if access.surface.takes(ID_TOKEN.auth):
            # The check refuses a missing or bad token itself, with the surface's rate-limit headers.
            entry["typed_per_filter_config"][_JWT_AUTHN] = {
                "@type": _TYPE + "filters.http.jwt_authn.v3.PerRouteConfig",
                "requirement_name": _ID_TOKEN_CHECKED,
            }
    if access.surface.json_names:
        entry["typed_per_filter_config"][_TRANSCODER] = _transcoder(settings, camel_case=True)
    for key, headers in _deadline(binding, settings).items():
        entry.setdefault(key, []).extend(headers)
    return entry


def _per_client(name: str, requests_per_minute: int, surface: Surface) -> dict[str, Any]:
    """A rate limit of `requests_per_minute` per client address, named `name`, answered in `surface`'s
    terms by the gatekeeper's rate-limit service."""
    return {
        "actions": [
            {
                "generic_key": {
                    "descriptor_key": "policy",
                    "descriptor_value": f"{name}:{requests_per_minute}",
                }
            },
            {"generic_key": {"descriptor_key": "surface", "descriptor_value": surface.name}},
            {"remote_address": {}},
        ]
    }


def _jwt_authn(settings: EdgeSettings) -> dict[str, Any]:
    """jwt_authn with the one provider of ID tokens: issuer, audience and keys as configured; the
    token's subject and email passed on as headers; required only by the routes that name it."""
    oidc = settings.oidc or OidcSettings.from_env({})
    uri = oidc.jwks_uri or f"http://{AUTHZ}{JWKS_PATH}"
    credential = ID_TOKEN
    provider = {
        "issuer": oidc.issuer,
        "audiences": [oidc.audience],
        "remote_jwks": {
            "http_uri": {"uri": uri, "cluster": OIDC_JWKS if oidc.jwks_uri else AUTHZ, "timeout": "5s"},
            # Keys are fetched when the edge starts and then every cache_duration, off the request path.
            "cache_duration": "30s" if oidc.embedded else "600s",
            "async_fetch": {},
            "retry_policy": {"num_retries": 3},
        },
        "from_headers": [
            {"name": "Authorization", "value_prefix": "Bearer "},
            {"name": "Authorization", "value_prefix": "bearer "},
        ],
        "claim_to_headers": [
            {"header_name": credential.verified_subject, "claim_name": "sub"},
            {"header_name": credential.verified_email, "claim_name": "email"},
        ],
        "failed_status_in_metadata": _JWT_FAILURE,
    }
    return {
        "@type": _TYPE + "filters.http.jwt_authn.v3.JwtAuthentication",
        "providers": {_ID_TOKEN: provider},
        "requirement_map": {
            _ID_TOKEN: {"provider_name": _ID_TOKEN},
            # A bad token is refused; none at all is the endpoint's to judge.
            _ID_TOKEN_IF_SENT: {
                "requires_any": {"requirements": [{"provider_name": _ID_TOKEN}, {"allow_missing": {}}]}
            },
            _ID_TOKEN_CHECKED: {
                "requires_any": {
                    "requirements": [{"provider_name": _ID_TOKEN}, {"allow_missing_or_failed": {}}]
                }
            },
        },
    }


def _verified_headers() -> list[str]:
    """The headers the edge fills from a verified token: never taken from a client."""
    names = [
        n
        for c in CREDENTIALS
        for n in (c.verified_subject, c.verified_email, c.verified_failure)
        if n is not None
    ]
    return list(dict.fromkeys(names))


def _oidc_cluster(settings: EdgeSettings) -> list[dict[str, Any]]:
    """The cluster of a configured provider's JWKS URI (TLS for https, its certificate checked)."""
    oidc = settings.oidc
    if oidc is None or oidc.jwks_uri is None:
        return []
    parsed = urllib.parse.urlsplit(oidc.jwks_uri)
    host = parsed.hostname or ""
    tls = parsed.scheme == "https"
    cluster = _http_cluster(OIDC_JWKS, [f"{host}:{parsed.port or (443 if tls else 80)}"])
    if tls:
        cluster["transport_socket"] = _verified_tls(host, oidc.ca_file)
    return [cluster]


def _verified_tls(host: str, ca_file: str) -> dict[str, Any]:
    """TLS to `host`, its certificate checked against `ca_file` and its name."""
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": _TYPE + "transport_sockets.tls.v3.UpstreamTlsContext",
            "sni": host,
            "common_tls_context": {
                "validation_context": {
                    "trusted_ca": {"filename": ca_file},
                    "match_typed_subject_alt_names": [{"san_type": "DNS", "matcher": {"exact": host}}],
                }
            },
        },
    }


def mcp_routes(settings: EdgeSettings) -> list[dict[str, Any]]:
    """Deployments' MCP endpoints: HTTP to the workflows service, which decides who connects (an ID
    token the edge verified, a deployment key, or anyone); limited per client address."""
    return [
        {
            "name": "mcp:deployments",
            "match": {"prefix": MCP_PREFIX},
            "route": {
                "cluster": MCP,
                "timeout": f"{settings.upstream_timeout_seconds}s",
                "retry_policy": _RETRY_UNSENT,
                # A session lives in one replica: its requests follow it there.
                "hash_policy": [{"header": {"header_name": "mcp-session-id"}}],
                "rate_limits": [
                    _per_client("mcp_endpoint", settings.mcp_requests_per_minute, surface_at(MCP_PREFIX))
                ],
            },
            "request_headers_to_remove": list(IDENTITY_HEADERS),
            "typed_per_filter_config": {
                _EXT_AUTHZ: {"@type": _EXT_AUTHZ_PER_ROUTE, "disabled": True},
                _TRANSCODER: {"@type": _FILTER_CONFIG, "disabled": True},
                _JWT_AUTHN: {
                    "@type": _TYPE + "filters.http.jwt_authn.v3.PerRouteConfig",
                    "requirement_name": _ID_TOKEN_IF_SENT,
                },
            },
        }
    ]


def tool_routes(settings: EdgeSettings) -> list[dict[str, Any]]:
    """The Support and HydraCore APIs' MCP servers: HTTP to the gatekeeper, which checks each request's
    key itself (and counts it in the key's window), with the client's address as Envoy saw it."""
    return [
        {
            "name": f"tools:{path}",
            "match": {"safe_regex": {"regex": f"^{re.escape(path)}/?$"}},
            "route": {"cluster": TOOLS, "timeout": f"{settings.upstream_timeout_seconds}s"},
            "request_headers_to_remove": list(IDENTITY_HEADERS),
            "request_headers_to_add": [
                {
                    "header": {"key": CLIENT_IP_HEADER, "value": _CLIENT_ADDRESS},
                    "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                }
            ],
            "typed_per_filter_config": {
                _EXT_AUTHZ: {"@type": _EXT_AUTHZ_PER_ROUTE, "disabled": True},
                _TRANSCODER: {"@type": _FILTER_CONFIG, "disabled": True},
            },
        }
        for path in TOOL_PATHS
    ]


def jwks_routes(settings: EdgeSettings) -> list[dict[str, Any]]:
    """GET /.well-known/jwks.json: the embedded issuer's public keys, for anyone verifying its tokens."""
    if settings.oidc is not None and not settings.oidc.embedded:
        return []
    return [
        {
            "name": "jwks",
            "match": {
                "path": JWKS_PATH,
                "headers": [{"name": ":method", "string_match": {"exact": "GET"}}],
            },
            "route": {"cluster": AUTHZ, "timeout": "5s"},
            "request_headers_to_remove": list(IDENTITY_HEADERS),
            "typed_per_filter_config": {
                _EXT_AUTHZ: {"@type": _EXT_AUTHZ_PER_ROUTE, "disabled": True},
                _TRANSCODER: {"@type": _FILTER_CONFIG, "disabled": True},
            },
        }
    ]


def _deadline(binding: Binding, settings: EdgeSettings) -> dict[str, list[Any]]:
    """The service's deadline as grpc-timeout, set by Envoy alone (a client's is replaced or dropped).

    Envoy does not send one by itself: only with the deprecated max_grpc_timeout, and
    x-envoy-expected-rq-timeout-ms goes with suppress_envoy_headers.
    """
    if binding.streaming:  # no route timeout: the stream's own bounds apply
        return {"request_headers_to_remove": ["grpc-timeout"]}
    milliseconds = settings.upstream_timeout_seconds * 1000 - DEADLINE_HEADROOM_MS
    header = {"key": "grpc-timeout", "value": f"{milliseconds}m"}
    return {"request_headers_to_add": [{"header": header, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}]}


def _direct_route(
    name: str, match: dict[str, Any], status: int, body: dict[str, str], headers: Mapping[str, str]
) -> dict[str, Any]:
    """A route Envoy answers itself, with no upstream and no key check."""
    return {
        "name": name,
        "match": match,
        "direct_response": {"status": status, "body": body},
        "response_headers_to_add": [
            {"header": {"key": k, "value": v}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
            for k, v in headers.items()
        ],
        "typed_per_filter_config": {
            _EXT_AUTHZ: {"@type": _EXT_AUTHZ_PER_ROUTE, "disabled": True},
            # Not a gRPC method: the transcoder would refuse it before the route answers.
            _TRANSCODER: {"@type": _FILTER_CONFIG, "disabled": True},
        },
    }


def not_found_routes() -> list[dict[str, Any]]:
    """404 for paths no route binds: in the envelope of the surface whose prefix the path falls under
    (the longest first), else the fallback surface's; the last routes of all."""
    claims = [*by_prefix(), ("/", FALLBACK)]
    return [
        _direct_route(
            f"not_found:{prefix}",
            {"prefix": prefix},
            404,
            {"inline_string": json.dumps(surface.envelope.reply(404, "not_found", "Not found."))},
            {"content-type": "application/json"},
        )
        for prefix, surface in claims
    ]


def method_not_allowed_routes(bindings: Sequence[Binding]) -> list[dict[str, Any]]:
    """For each bound path, a 405 (with Allow) for the methods it does not bind; after the real routes."""
    allowed: dict[str, list[str]] = {}
    surfaces: dict[str, Surface] = {}
    for b in bindings:
        allowed.setdefault(b.template, []).append(b.method)
        surfaces[b.template] = b.access.surface
    routes = []
    for template, methods in allowed.items():
        body = surfaces[template].envelope.reply(405, "method_not_allowed", "Method not allowed.")
        answer = _direct_route(
            f"method_not_allowed:{template}",
            {"safe_regex": {"regex": template_regex(template)}},
            405,
            {"inline_string": json.dumps(body)},
            {"content-type": "application/json", "allow": ", ".join(sorted(set(methods)))},
        )
        routes.append(answer)
    return routes


def preflight_routes(bindings: Sequence[Binding]) -> list[dict[str, Any]]:
    """OPTIONS on each path open to any origin, for the CORS filter to answer browsers' preflights.

    The CORS filter skips direct-response routes, so these route to the upstream cluster, which a
    preflight never reaches (any other OPTIONS request is refused there as an unknown method).
    """
    routes = []
    for template, cluster in sorted(
        {(b.template, b.cluster) for b in bindings if b.access.surface.any_origin}
    ):
        routes.append(
            {
                "name": f"cors_preflight:{template}",
                "match": {
                    "safe_regex": {"regex": template_regex(template)},
                    "headers": [{"name": ":method", "string_match": {"exact": "OPTIONS"}}],
                },
                "route": {"cluster": cluster},
                "request_headers_to_remove": list(IDENTITY_HEADERS),
                "typed_per_filter_config": {
                    _EXT_AUTHZ: {"@type": _EXT_AUTHZ_PER_ROUTE, "disabled": True},
                    _CORS: _ANY_ORIGIN_CORS,
                },
            }
        )
    return routes


def docs_routes(docs: Mapping[str, Path]) -> list[dict[str, Any]]:
    """GET /openapi.json (and .yaml), /docs (Swagger UI) and /redoc, served by Envoy from generated files."""
    types = {".json": "application/json", ".yaml": "application/yaml", ".html": "text/html; charset=utf-8"}
    return [
        _direct_route(
            f"docs:{url}",
            {"path": url, "headers": [{"name": ":method", "string_match": {"exact": "GET"}}]},
            200,
            {"filename": str(path)},
            {"content-type": types[path.suffix]},
        )
        for url, path in docs.items()
    ]


def _status_is(status: int) -> dict[str, Any]:
    return {
        "status_code_filter": {
            "comparison": {
                "op": "EQ",
                "value": {"default_value": status, "runtime_key": f"hydra.local_reply.{status}"},
            }
        }
    }


def _under(prefix: str) -> dict[str, Any]:
    """Requests whose path starts with `prefix` (the transcoder may have rewritten :path to the gRPC
    method; it keeps the original)."""
    return {
        "or_filter": {
            "filters": [
                {"header_filter": {"header": {"name": name, "string_match": {"prefix": prefix}}}}
                for name in (":path", "x-envoy-original-path")
            ]
        }
    }


def _in_envelope(match: dict[str, Any], body: dict[str, Any], prefix: str | None) -> dict[str, Any]:
    """A mapper giving `body`, naming the request, to Envoy's own replies that `match`, under `prefix`
    (None: any path)."""
    where = match if prefix is None else {"and_filter": {"filters": [match, _under(prefix)]}}
    request_id = f"%REQ({REQUEST_ID_HEADER.upper()})%"
    return {"filter": where, "body_format_override": {"json_format": identified(body, request_id)}}


def local_reply_config() -> dict[str, Any]:
    """Envoy-generated errors in the envelope of the path's surface; the gatekeeper's denials kept as sent."""
    mappers: list[dict[str, Any]] = [
        {
            # Denials by ext_authz (UAEX) already carry the right body, naming the request.
            "filter": {
                "and_filter": {
                    "filters": [
                        {"response_flag_filter": {"flags": ["UAEX"]}},
                        {
                            "status_code_filter": {
                                "comparison": {
                                    "op": "LE",
                                    "value": {
                                        "default_value": 499,
                                        "runtime_key": "hydra.local_reply.denied",
                                    },
                                }
                            }
                        },
                    ]
                }
            },
        }
    ]
    # jwt_authn refuses a token for another audience with 403; like every other bad token, it is 401.
    refused_token = {
        "and_filter": {
            "filters": [
                _status_is(403),
                {
                    "metadata_filter": {
                        "matcher": {
                            "filter": _JWT_AUTHN,
                            "path": [{"key": _JWT_FAILURE}],
                            "value": {"present_match": True},
                        }
                    }
                },
            ]
        }
    }
    # The rate-limit service's denials (per client address, on public routes) cannot know the request.
    limited = {"response_flag_filter": {"flags": ["RL"]}}
    for prefix, surface in [*by_prefix(), (None, FALLBACK)]:
        body = surface.envelope.body(RateLimited(RATE_LIMIT_EXCEEDED))
        mappers.append(_in_envelope(limited, body, prefix))
    for prefix, surface in [*by_prefix(), (None, FALLBACK)]:
        body = surface.envelope.reply(401, "unauthorized", "Invalid ID token: %LOCAL_REPLY_BODY%.")
        mapper = _in_envelope(refused_token, body, prefix)
        mappers.append({**mapper, "status_code": 401})
    unsent = {
        "and_filter": {"filters": [_status_is(503), {"response_flag_filter": {"flags": _UNSENT_FLAGS}}]}
    }
    # Each surface's prefix, the longest first, then every other path in the fallback's envelope.
    claims: list[tuple[str | None, Surface]] = [*by_prefix(), (None, FALLBACK)]
    for prefix, surface in claims:
        body = surface.envelope.reply(503, "server_error", _UNSENT_503)
        mappers.append(_in_envelope(unsent, body, prefix))
    for prefix, surface in claims:
        for status, code, message in _LOCAL_REPLIES:
            body = surface.envelope.reply(status, code, message)
            mappers.append(_in_envelope(_status_is(status), body, prefix))
    return {"mappers": mappers}


def _http_cluster(name: str, addresses: Sequence[str]) -> dict[str, Any]:
    """A cluster of HTTP/1.1 replicas."""
    endpoints = []
    for address in addresses:
        host, _, port = address.rpartition(":")
        endpoints.append({"endpoint": {"address": _address(host, int(port))}})
    return {
        "name": name,
        "type": "STRICT_DNS",
        "dns_lookup_family": "V4_ONLY",
        "connect_timeout": "1s",
        "lb_policy": "ROUND_ROBIN",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": endpoints}]},
        # Retries too: Envoy's default of 3 at once would fail the 4th read whose replica died under way.
        "circuit_breakers": {
            "thresholds": [
                {
                    "max_connections": 4096,
                    "max_pending_requests": 4096,
                    "max_requests": 4096,
                    "max_retries": 1024,
                }
            ]
        },
    }


def _grpc_cluster(name: str, addresses: Sequence[str]) -> dict[str, Any]:
    """A cluster of gRPC replicas, health-checked over gRPC."""
    return {
        **_http_cluster(name, addresses),
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        },
        "health_checks": [
            {
                "timeout": "1s",
                "interval": "2s",
                "no_traffic_interval": "1s",
                "unhealthy_threshold": 2,
                "healthy_threshold": 1,
                "grpc_health_check": {},
            }
        ],
        "common_lb_config": {"healthy_panic_threshold": {"value": 0}},
        **(_OUTLIER_DETECTION if len(addresses) > 1 else {}),
    }


# Among replicas, one that fails to connect or resets twice in a row is left out for 10 s (and longer if
# it does so again) before its health check would catch it; never more than half of them. A lone replica
# is never ejected: there is nowhere else to send its requests.
_OUTLIER_DETECTION = {
    "outlier_detection": {
        "split_external_local_origin_errors": True,
        "consecutive_local_origin_failure": 2,
        "enforcing_consecutive_local_origin_failure": 100,
        "interval": "1s",
        "base_ejection_time": "10s",
        "max_ejection_percent": 50,
    }
}


def _filters(
    settings: EdgeSettings, services: Sequence[str], clusters: Sequence[str], max_answer_bytes: int
) -> list[dict[str, Any]]:
    buffer = {
        "@type": _TYPE + "filters.http.buffer.v3.Buffer",
        "max_request_bytes": settings.max_request_bytes,
    }
    return [
        {
            "name": _CORS,
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors"},
        },
        {
            "name": "envoy.filters.http.health_check",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.health_check.v3.HealthCheck",
                "pass_through_mode": False,
                "headers": [{"name": ":path", "string_match": {"exact": "/healthz"}}],
                "cluster_min_healthy_percentages": {c: {"value": 100} for c in clusters},
            },
        },
        # The whole body, before anything else works on it: one over the limit is 413 however it is sent.
        # (After ext_authz, a body over the limit that ext_authz had buffered would stall, not 413.)
        {"name": _BUFFER, "typed_config": buffer},
        # A client never sends what jwt_authn vouches for (a token without an email claim adds none).
        {
            "name": "strip_verified_headers",
            "typed_config": {
                "@type": _TYPE + "filters.http.header_mutation.v3.HeaderMutation",
                "mutations": {"request_mutations": [{"remove": name} for name in _verified_headers()]},
            },
        },
        {"name": _JWT_AUTHN, "typed_config": _jwt_authn(settings)},
        {
            "name": _EXT_AUTHZ,
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
                "http_service": _check_service({}, _every_rate_header()),
                "transport_api_version": "V3",
                "failure_mode_allow": False,
                "status_on_error": {"code": 503},
                "allowed_headers": _exact(
                    (
                        *_credential_headers(CREDENTIALS),
                        *_verified_headers(),
                        REQUEST_ID_HEADER,
                        PARTIAL_BODY_HEADER,  # Envoy's own, on a body it cut (a client's only skips a check)
                    )
                ),
            },
        },
        {
            "name": "envoy.filters.http.ratelimit",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit",
                "domain": "hydra",
                "timeout": "1s",
                "failure_mode_deny": False,
                "disable_x_envoy_ratelimited_header": True,
                "rate_limit_service": {
                    "grpc_service": {
                        "envoy_grpc": {"cluster_name": GATEKEEPER},
                        "initial_metadata": _internal_token_headers(settings),
                    },
                    "transport_api_version": "V3",
                },
            },
        },
        # Enabled per route, with that route's limit.
        {"name": _LARGE_BODIES, "disabled": True, "typed_config": buffer},
        {
            "name": "envoy.filters.http.header_mutation",
            "typed_config": {
                "@type": _TYPE + "filters.http.header_mutation.v3.HeaderMutation",
                "mutations": {
                    "request_mutations": [
                        {"remove_on_match": {"key_matcher": {"safe_regex": {"regex": UNCARRIABLE_HEADERS}}}}
                    ]
                },
            },
        },
        {
            "name": _LUA,
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
                "default_source_code": {"inline_string": LUA_FILTER.read_text()},
            },
        },
        {
            "name": _TRANSCODER,
            "typed_config": _transcoder(settings, services=services, max_answer=max_answer_bytes),
        },
        {
            "name": "envoy.filters.http.router",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
                "suppress_envoy_headers": True,
            },
        },
    ]


def _transcoder(
    settings: EdgeSettings,
    *,
    services: Sequence[str] = (),
    max_answer: int = 0,
    camel_case: bool = False,
) -> dict[str, Any]:
    """The JSON transcoder's config: field names as the protos spell them, or (a route's override on a
    surface that prints lowerCamelCase) their JSON names."""
    if camel_case:
        bindings = _bindings(settings.descriptor_set)
        services = sorted({b.service for b in bindings})
        max_answer = settings.max_answer_bytes(bindings)
    return {
        "@type": _TYPE + "filters.http.grpc_json_transcoder.v3.GrpcJsonTranscoder",
        "proto_descriptor": str(settings.descriptor_set),
        "services": list(services),
        "match_incoming_request_route": True,
        "convert_grpc_status": True,
        "print_options": {
            "preserve_proto_field_names": not camel_case,
            "always_print_primitive_fields": True,
        },
        "request_validation_options": {
            "reject_unknown_method": True,
            "reject_unknown_query_parameters": True,
            "reject_binding_body_field_collisions": True,
        },
        # Unset, a unary answer larger than the connection buffer (1 MiB) would become a 500.
        "max_response_body_size": max_answer,
    }


@functools.cache
def _bindings(descriptor_set: Path) -> list[Binding]:
    return load_bindings(descriptor_set)


def _internal_token_headers(settings: EdgeSettings) -> list[dict[str, str]]:
    token = settings.internal_token
    return [{"key": INTERNAL_TOKEN_HEADER, "value": token}] if token else []


def _vouching(settings: EdgeSettings) -> dict[str, Any]:
    """Every request upstream carries the internal token, overwriting one a client sent (or drops it)."""
    if not settings.internal_token:
        return {"request_headers_to_remove": [INTERNAL_TOKEN_HEADER]}
    return {
        "request_headers_to_add": [
            {"header": header, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
            for header in _internal_token_headers(settings)
        ]
    }


def render(
    settings: EdgeSettings, bindings: Sequence[Binding], docs: Mapping[str, Path] | None = None
) -> dict[str, Any]:
    """The whole Envoy bootstrap for these bindings (and the API reference files, when given)."""
    clusters = sorted({b.cluster for b in bindings} - {GATEKEEPER})
    services = sorted({b.service for b in bindings})
    max_answer = settings.max_answer_bytes(bindings)
    routes = [
        *docs_routes(docs or {}),
        *jwks_routes(settings),
        *mcp_routes(settings),
        *tool_routes(settings),
        *(route(b, settings) for b in bindings),
    ]
    routes.extend(preflight_routes(bindings))
    routes.extend(method_not_allowed_routes(bindings))
    routes.extend(not_found_routes())
    manager = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3"
        ".HttpConnectionManager",
        "stat_prefix": "edge",
        "codec_type": "AUTO",
        "use_remote_address": True,
        "xff_num_trusted_hops": settings.trusted_hops,
        # The edge names every request itself (a client's x-request-id is dropped before one is made),
        # and every answer carries the name. A client's trace context is dropped too: a trace begins at
        # the edge, so a client can neither choose a request's name through it nor ask for its sampling.
        "early_header_mutation_extensions": [
            {
                "name": "envoy.http.early_header_mutation.header_mutation",
                "typed_config": {
                    "@type": _TYPE + "http.early_header_mutation.header_mutation.v3.HeaderMutation",
                    "mutations": [{"remove": name} for name in (REQUEST_ID_HEADER, *tracing.TRACE_HEADERS)],
                },
            }
        ],
        **_tracing(settings),
        "generate_request_id": True,
        "always_set_request_id_in_response": True,
        "normalize_path": True,
        "merge_slashes": True,
        "request_headers_timeout": f"{settings.request_headers_timeout_seconds}s",
        "request_timeout": f"{settings.request_timeout_seconds}s",
        "stream_idle_timeout": f"{settings.stream_idle_timeout_seconds}s",
        "common_http_protocol_options": {"idle_timeout": f"{settings.idle_timeout_seconds}s"},
        # Envoy's edge defaults allow 2^31 streams per connection and 256 MiB windows.
        "http2_protocol_options": {
            "max_concurrent_streams": 100,
            "initial_stream_window_size": 65536,
            "initial_connection_window_size": MIB,
        },
        "route_config": {
            "name": "hydra",
            "max_direct_response_body_size_bytes": 4 * 1024 * 1024,  # the OpenAPI document
            "virtual_hosts": [{"name": "hydra", "domains": ["*"], "routes": routes}],
            **_vouching(settings),
        },
        "local_reply_config": local_reply_config(),
        "http_filters": [
            *_trace_named_requests(settings),
            *_filters(settings, services, [*clusters, GATEKEEPER], max_answer),
        ],
    }
    return {
        # Health checks and operators still get in when clients hold every connection.
        "admin": {"address": _address("127.0.0.1", settings.admin_port), "ignore_global_conn_limit": True},
        "overload_manager": overload_manager(settings),
        **_trace_export_runtime(settings),
        "static_resources": {
            "listeners": [
                {
                    "name": "edge",
                    "address": _address(settings.listen_host, settings.port),
                    # Flow control per connection: how much Envoy reads or queues before pausing it.
                    "per_connection_buffer_limit_bytes": MIB,
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": manager,
                                }
                            ]
                        }
                    ],
                },
                *_stats_listener(settings),
            ],
            "clusters": [
                *(_grpc_cluster(name, settings.upstreams[name]) for name in [GATEKEEPER, *clusters]),
                *_stats_cluster(settings),
                _http_cluster(AUTHZ, settings.upstreams[AUTHZ]),
                {**_http_cluster(MCP, settings.upstreams[MCP]), "lb_policy": "RING_HASH"},
                _http_cluster(TOOLS, settings.upstreams[TOOLS]),
                *_oidc_cluster(settings),
                *_collector_cluster(settings),
            ],
        },
    }


_ADMIN = "envoy_admin"


def _stats_address(env: Mapping[str, str]) -> tuple[str, int] | None:
    port = config.env_int(env, "HYDRA_ENVOY_STATS_PORT", 0)
    return (config.env_str(env, "HYDRA_METRICS_HOST", "127.0.0.1"), port) if port else None


def _stats_listener(settings: EdgeSettings) -> list[dict[str, Any]]:
    """The listener a Prometheus scrapes Envoy's statistics on: GET /stats/prometheus, nothing else."""
    if settings.stats_address is None:
        return []
    manager = {
        "@type": _TYPE + "filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "stats",
        "route_config": {
            "virtual_hosts": [
                {
                    "name": "stats",
                    "domains": ["*"],
                    "routes": [
                        {
                            "match": {"path": "/stats/prometheus", "headers": [_method_is("GET")]},
                            "route": {"cluster": _ADMIN},
                        },
                        {"match": {"prefix": "/"}, "direct_response": {"status": 404}},
                    ],
                }
            ]
        },
        "http_filters": [
            {
                "name": "envoy.filters.http.router",
                "typed_config": {"@type": _TYPE + "filters.http.router.v3.Router"},
            }
        ],
    }
    return [
        {
            "name": "stats",
            "address": _address(*settings.stats_address),
            "filter_chains": [
                {
                    "filters": [
                        {"name": "envoy.filters.network.http_connection_manager", "typed_config": manager}
                    ]
                }
            ],
        }
    ]


def _method_is(method: str) -> dict[str, Any]:
    return {"name": ":method", "string_match": {"exact": method}}


def _tracing(settings: EdgeSettings) -> dict[str, Any]:
    """The connection manager's tracing: every request a trace of its own, sent to the collector by
    OTLP, with a span for each call Envoy makes upstream (the check, the rate limit, the service)."""
    if settings.collector is None:
        return {}
    return {
        "tracing": {
            # An unsampled request still has a trace id (its name) and passes the decision on.
            "random_sampling": {"value": settings.sampled_percent},
            "spawn_upstream_span": True,
            "provider": {
                "name": "envoy.tracers.opentelemetry",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig",
                    "grpc_service": {"envoy_grpc": {"cluster_name": COLLECTOR}, "timeout": "1s"},
                    "service_name": "hydra-edge",
                },
            },
        }
    }


def _trace_export_runtime(settings: EdgeSettings) -> dict[str, Any]:
    """How often Envoy exports its spans, when tracing: as often as the services do."""
    if settings.collector is None:
        return {}
    flush = {"tracing.opentelemetry.flush_interval_ms": settings.export_delay_ms}
    return {"layered_runtime": {"layers": [{"name": "tracing", "static_layer": flush}]}}


def _trace_named_requests(settings: EdgeSettings) -> list[dict[str, Any]]:
    """When tracing, the request's id is its trace id (first of all filters, so all see it): the id a
    client quotes finds the trace, and every log line of the request, which carries it."""
    if settings.collector is None:
        return []
    return [
        {
            "name": "name_requests_by_trace",
            "typed_config": {
                "@type": _TYPE + "filters.http.header_mutation.v3.HeaderMutation",
                "mutations": {
                    "request_mutations": [
                        {
                            "append": {
                                "header": {"key": REQUEST_ID_HEADER, "value": "%TRACE_ID%"},
                                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                            }
                        }
                    ]
                },
            },
        }
    ]


def _collector_cluster(settings: EdgeSettings) -> list[dict[str, Any]]:
    """The OTLP collector, over HTTP/2 (TLS for https, its certificate checked against the system's CAs)."""
    if settings.collector is None:
        return []
    collector = settings.collector
    cluster = {
        **_http_cluster(COLLECTOR, [f"{collector.host}:{collector.port}"]),
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        },
    }
    if collector.ca_file is not None:
        cluster["transport_socket"] = _verified_tls(collector.host, collector.ca_file)
    return [cluster]


def _stats_cluster(settings: EdgeSettings) -> list[dict[str, Any]]:
    """Envoy's own admin port, as the stats listener's upstream."""
    if settings.stats_address is None:
        return []
    return [_http_cluster(_ADMIN, [f"127.0.0.1:{settings.admin_port}"])]


_FIXED_HEAP = "envoy.resource_monitors.fixed_heap"


def overload_manager(settings: EdgeSettings) -> dict[str, Any]:
    """Envoy's own protection: a heap budget (shed work as it fills) and a cap on client connections."""

    def at(fraction: float) -> list[dict[str, Any]]:
        return [{"name": _FIXED_HEAP, "threshold": {"value": fraction}}]

    return {
        "refresh_interval": "0.25s",
        "resource_monitors": [
            {
                "name": _FIXED_HEAP,
                "typed_config": {
                    "@type": _TYPE + "resource_monitors.fixed_heap.v3.FixedHeapConfig",
                    "max_heap_size_bytes": settings.max_heap_mb * MIB,
                },
            },
            {
                "name": "envoy.resource_monitors.global_downstream_max_connections",
                "typed_config": {
                    "@type": _TYPE
                    + "resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig",
                    "max_active_downstream_connections": settings.max_connections,
                },
            },
        ],
        "actions": [
            {"name": "envoy.overload_actions.shrink_heap", "triggers": at(0.90)},
            {"name": "envoy.overload_actions.disable_http_keepalive", "triggers": at(0.92)},
            {"name": "envoy.overload_actions.stop_accepting_requests", "triggers": at(0.95)},
        ],
    }


def write(settings: EdgeSettings, path: Path) -> Path:
    """Writes the config (JSON, which Envoy reads as YAML) and the API reference beside it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    docs = openapi.write(path.parent / "api-docs", settings.descriptor_set)
    bindings = load_bindings(settings.descriptor_set)
    path.touch(mode=0o600)  # it may hold the internal token
    path.chmod(0o600)
    path.write_text(json.dumps(render(settings, bindings, docs), indent=1))
    return path


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m edge.envoy_config --out gen/envoy.yaml`: write the config from HYDRA_* settings."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "gen" / "envoy.yaml")
    args = parser.parse_args(argv)
    sys.stdout.write(f"{write(EdgeSettings.from_env(), args.out)}\n")


if __name__ == "__main__":
    main()
