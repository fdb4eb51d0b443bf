"""The API surfaces, declared once: each route belongs to one (named in its proto), and its surface decides
the route's path prefix, the credentials it takes, its error envelope, its rate-limit headers and its
success statuses. The edge config, the OpenAPI document, the gatekeeper and the gRPC servers all read
these declarations; a new surface is one more here, named in the protos."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import grpc
from hydra.options.v1 import options_pb2

from services.common.errors import MAX_ERROR_BODY_BYTES, MAX_LISTED_ERRORS, FieldError, HydraError, clip

AuthMode = options_pb2.AuthMode
SurfaceId = options_pb2.Surface

Declared = TypeVar("Declared")  # a Credential or a Surface
# Limit, remaining and retry-after (when refused); a fourth, when a surface has it, says when the window
# frees a request (epoch seconds).
RATE_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "retry-after")
# The edge names every request (the header reaches the services and comes back in the response); every
# error body names its request by that id.
REQUEST_ID_HEADER = "x-request-id"
REQUEST_ID_FIELD = "request_id"
_LISTED_BYTES = 12 * 1024  # of a detail list's field errors, leaving room for the rest of the body
_MESSAGE_CHARS = 2000  # of a message (a Support error, grpc-message)


@dataclass(frozen=True, eq=False)  # one object per credential: compared and hashed by identity
class Credential:
    """One way a caller proves who it is: the auth mode that names it, where it travels, what it is."""

    auth: int  # hydra.options.v1.AuthMode
    name: str  # as the edge config names it in a route's policy
    key_kind: str | None  # the kind of key it takes (hmcp, hc_live, widget); None: no key at all
    headers: tuple[str, ...] = ()  # where a key travels; "authorization" means a Bearer token
    missing: str = ""  # the 401 message when none is sent
    wrong_kind: str = ""  # the 401 message for another kind of key
    one_instance: bool = False  # a key opens one instance only, which the route's path must name
    # A token the edge verifies itself (an ID token): the headers it puts the token's subject and email
    # in, for the gatekeeper (a client's own headers of these names never pass the edge).
    verified_subject: str | None = None
    verified_email: str | None = None
    verified_failure: str | None = None  # why the edge refused the token, for the gatekeeper to say
    security: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # OpenAPI security schemes

    def secret(self, headers: Mapping[str, str]) -> str | None:
        """The key a request carries for this credential (headers named in lower case), or None."""
        for name in self.headers:
            value = headers.get(name, "")
            if name == "authorization":
                scheme, _, value = value.partition(" ")
                if scheme.lower() != "bearer":
                    continue
            if value.strip():
                return value.strip()
        return None


_KEY_HEADERS = ("authorization", "x-api-key")
SUPPORT_KEY = Credential(
    AuthMode.AUTH_MODE_SUPPORT_KEY,
    "support_key",
    "hmcp",
    _KEY_HEADERS,
    missing="Missing API key. Send it as 'Authorization: Bearer hmcp_...'.",
    wrong_kind="Malformed API key: this API takes hmcp_ keys.",
    security={"SupportKey": {"type": "http", "scheme": "bearer", "description": "An hmcp_ key."}},
)
CORE_KEY = Credential(
    AuthMode.AUTH_MODE_CORE_KEY,
    "core_key",
    "hc_live",
    _KEY_HEADERS,
    missing="Not authenticated",
    wrong_kind="Invalid API key: this API takes hc_live_ keys.",
    security={
        "CoreKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key", "description": "An hc_live_ key."},
        "CoreKeyBearer": {"type": "http", "scheme": "bearer", "description": "An hc_live_ key."},
    },
)
WIDGET_TOKEN = Credential(
    AuthMode.AUTH_MODE_WIDGET_TOKEN,
    "widget_token",
    "widget",
    ("x-widget-token",),
    missing="Missing widget token (X-Widget-Token).",
    wrong_kind="Invalid widget token.",
    one_instance=True,
    security={"WidgetToken": {"type": "apiKey", "in": "header", "name": "X-Widget-Token"}},
)
ID_TOKEN = Credential(
    AuthMode.AUTH_MODE_ID_TOKEN,
    "id_token",
    None,
    ("authorization",),
    verified_subject="x-hydra-jwt-sub",
    verified_email="x-hydra-jwt-email",
    verified_failure="x-hydra-jwt-failure",
    missing="Missing ID token. Send it as 'Authorization: Bearer <ID token>'.",
    wrong_kind="Invalid ID token.",
    security={"IdToken": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
)
NO_CREDENTIAL = Credential(AuthMode.AUTH_MODE_PUBLIC, "public", None)
CREDENTIALS = (SUPPORT_KEY, CORE_KEY, WIDGET_TOKEN, ID_TOKEN, NO_CREDENTIAL)
# What no HTTP route takes: identity from other services (internal), or no tenant at all (operator).
SERVICE_AUTH_MODES = (AuthMode.AUTH_MODE_INTERNAL, AuthMode.AUTH_MODE_ADMIN)


def credential_named(name: str) -> Credential:
    """The credential the edge config names `name`."""
    return _the(CREDENTIALS, "name", name, f"no credential is named {name!r}")


def credential_for(auth: int) -> Credential:
    """The credential of an HTTP route's auth mode."""
    return _the(CREDENTIALS, "auth", auth, f"auth mode {auth} takes no HTTP credential")


def _the(declared: Sequence[Declared], attribute: str, value: object, missing: str) -> Declared:
    """The one declared item whose `attribute` is `value` (a ValueError saying `missing` if none)."""
    for item in declared:
        if getattr(item, attribute) == value:
            return item
    raise ValueError(missing)


@dataclass(frozen=True)
class RenderedError:
    """An error ready for the wire: gRPC status, HTTP status, and the surface's JSON body."""

    grpc_status: grpc.StatusCode
    http_status: int
    body: str
    message: str


class Envelope(Protocol):
    """How a surface's error answers look."""

    def status(self, error: HydraError) -> int:
        """The HTTP status of `error`."""
        ...

    def body(self, error: HydraError) -> dict[str, Any]:
        """The JSON body of `error`."""
        ...

    def short(self, error: HydraError, message: str) -> dict[str, Any]:
        """A body of bounded size for `error`, with `message` (when the full body is too large)."""
        ...

    def reply(self, status: int, code: str, message: str) -> dict[str, Any]:
        """The body of an answer the edge itself gives (404, 405, 413, ...): `message` or its own words."""
        ...

    @property
    def invalid_status(self) -> int:
        """The status of a request whose fields fail validation."""
        ...

    def schemas(self) -> Mapping[str, Any]:
        """The OpenAPI schemas of its error bodies, by name."""
        ...

    @property
    def error_schema(self) -> str:
        """The name of the schema of its errors."""
        ...

    @property
    def invalid_schema(self) -> str:
        """The name of the schema of its validation errors."""
        ...


class SupportEnvelope:
    """Hydra Support's `{"error": "...", "code": "..."}` (plus details such as `blockers`)."""

    invalid_status = 400
    error_schema = invalid_schema = "SupportError"
    codes = (
        "unauthorized",
        "forbidden_scope",
        "validation_error",
        "not_found",
        "method_not_allowed",
        "fk_blocked",
        "conflict",
        "idempotency_key_in_use",
        "too_many_keys",
        "too_many_webhooks",
        "precondition_failed",
        "idempotency_key_reused",
        "rate_limited",
        "server_error",
    )

    def status(self, error: HydraError) -> int:
        return error.http_status

    def body(self, error: HydraError) -> dict[str, Any]:
        return {"error": error.message, "code": error.code, **error.extra}

    def short(self, error: HydraError, message: str) -> dict[str, Any]:
        return {"error": message, "code": error.code}

    def reply(self, status: int, code: str, message: str) -> dict[str, Any]:
        return {"error": message, "code": code}

    def schemas(self) -> Mapping[str, Any]:
        return {
            "SupportError": {
                "type": "object",
                "properties": {
                    "error": {"type": "string"},
                    "code": {"type": "string", "enum": list(self.codes)},
                    "blockers": {"type": "object", "additionalProperties": {"type": "integer"}},
                },
                "required": ["error", "code"],
            }
        }


def _listed(errors: Sequence[FieldError]) -> tuple[list[dict[str, Any]], int]:
    """The first field errors that fit a body, as dicts, and how many more there are."""
    listed: list[dict[str, Any]] = []
    size = 0
    for field_error in errors[:MAX_LISTED_ERRORS]:
        item = field_error.clipped().as_dict()
        size += len(json.dumps(item)) + 2
        if size > _LISTED_BYTES:
            break
        listed.append(item)
    return listed, len(errors) - len(listed)


# FastAPI's own wording where it has one.
_FASTAPI_WORDS = {404: "Not Found", 405: "Method Not Allowed"}


class FastApiEnvelope:
    """FastAPI's `{"detail": "..."}`, and 422 with a `detail` list naming each invalid field."""

    invalid_status = 422
    error_schema = "HTTPError"
    invalid_schema = "HTTPValidationError"

    def status(self, error: HydraError) -> int:
        return self.invalid_status if error.field_errors else error.http_status

    def body(self, error: HydraError) -> dict[str, Any]:
        if not error.field_errors:
            return {"detail": error.detail}
        listed, rest = _listed(error.field_errors)
        if rest:
            listed.append({"loc": [], "msg": f"{rest} more errors not listed", "type": "too_many_errors"})
        return {"detail": listed}

    def short(self, error: HydraError, message: str) -> dict[str, Any]:
        return {"detail": message}

    def reply(self, status: int, code: str, message: str) -> dict[str, Any]:
        return {"detail": _FASTAPI_WORDS.get(status, message)}

    def schemas(self) -> Mapping[str, Any]:
        return {
            "HTTPError": {
                "type": "object",
                "properties": {"detail": {"type": "string"}},
                "required": ["detail"],
            },
            "HTTPValidationError": {
                "type": "object",
                "properties": {
                    "detail": {"type": "array", "items": {"$ref": "#/components/schemas/ValidationError"}}
                },
                "required": ["detail"],
            },
            "ValidationError": {
                "type": "object",
                "properties": {
                    "loc": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
                    "msg": {"type": "string"},
                    "type": {"type": "string"},
                    "input": {},
                    "ctx": {"type": "object"},
                },
                "required": ["loc", "msg", "type"],
            },
        }


class MarketplaceEnvelope:
    """The workflow marketplace's `{"success": false, "error": {"code", "message", "details"}}`, with
    upper-case codes; a validation error lists each invalid field in `details.errors`."""

    invalid_status = 400
    error_schema = invalid_schema = "MarketplaceError"
    # Domain codes whose marketplace code is not simply the upper-case of their own.
    _CODES = {
        "forbidden_scope": "FORBIDDEN",
        "fk_blocked": "CONFLICT",
        "server_error": "INTERNAL_ERROR",
    }
    codes = (
        "VALIDATION_ERROR",
        "UNAUTHORIZED",
        "FORBIDDEN",
        "NOT_FOUND",
        "METHOD_NOT_ALLOWED",
        "CONFLICT",
        "IDEMPOTENCY_KEY_IN_USE",
        "PRECONDITION_FAILED",
        "IDEMPOTENCY_KEY_REUSED",
        "PLAN_LIMIT_EXCEEDED",
        "RATE_LIMITED",
        "INTERNAL_ERROR",
    )

    def status(self, error: HydraError) -> int:
        return error.http_status

    def code(self, domain_code: str) -> str:
        """The marketplace's code for a domain error code."""
        return self._CODES.get(domain_code, domain_code.upper())

    def body(self, error: HydraError) -> dict[str, Any]:
        details: dict[str, Any] = dict(error.extra)
        if error.field_errors:
            details["errors"], rest = _listed(error.field_errors)
            if rest:
                details["unlisted"] = rest
        return self._wrap(self.code(error.code), error.message, details)

    def short(self, error: HydraError, message: str) -> dict[str, Any]:
        return self._wrap(self.code(error.code), message, {})

    def reply(self, status: int, code: str, message: str) -> dict[str, Any]:
        return self._wrap(self.code(code), message, {})

    @staticmethod
    def _wrap(code: str, message: str, details: dict[str, Any]) -> dict[str, Any]:
        return {"success": False, "error": {"code": code, "message": message, "details": details}}

    def schemas(self) -> Mapping[str, Any]:
        return {
            "MarketplaceError": {
                "type": "object",
                "properties": {
                    "success": {"const": False},
                    "error": {
                        "type": "object",
                        "properties": {
                            "code": {"type": "string", "enum": list(self.codes)},
                            "message": {"type": "string"},
                            "details": {"type": "object"},
                        },
                        "required": ["code", "message", "details"],
                    },
                },
                "required": ["success", "error"],
            }
        }


@dataclass(frozen=True, eq=False)  # one object per surface: compared and hashed by identity
class Surface:
    """One API surface: where its routes live, who may call them, and how its answers look."""

    id: int  # hydra.options.v1.Surface
    name: str
    prefixes: tuple[str, ...]  # its routes' path prefixes (where the edge's own errors take its envelope)
    credentials: tuple[Credential, ...]  # what its routes may take
    envelope: Envelope
    rate_headers: tuple[str, ...] = RATE_HEADERS
    any_origin: bool = False  # browsers on any site call it (CORS), never with cookies
    summary: str = ""  # one sentence for the API reference
    json_names: bool = False  # answers print fields by their lowerCamelCase JSON names (workflowId)
    plans: bool = False  # writes may be refused by the caller's plan (402)
    # A body that is not JSON is refused as FastAPI refuses it (422 json_invalid at its offset), by the
    # edge's check before the body is transcoded.
    checks_json: bool = False
    path_id_schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "string", "format": "uuid"})

    def success_status(self, rpc_name: str, *, has_output: bool, streaming: bool) -> int:
        """A successful answer's status: 201 for a create, 204 when there is nothing to say, else 200."""
        if streaming:
            return 200
        if not has_output:
            return 204
        return 201 if rpc_name.startswith("Create") else 200

    def takes(self, auth: int) -> bool:
        """Whether an HTTP route of this surface may authenticate by `auth`."""
        return any(c.auth == auth for c in self.credentials)


_SUPPORT_ERRORS = SupportEnvelope()
_FASTAPI_ERRORS = FastApiEnvelope()
SUPPORT = Surface(
    SurfaceId.SURFACE_SUPPORT,
    "support",
    ("/api/",),
    (SUPPORT_KEY,),
    _SUPPORT_ERRORS,
    summary="Hydra Support (`/api/v1`, `Authorization: Bearer hmcp_...`).",
)
CORE = Surface(
    SurfaceId.SURFACE_CORE,
    "core",
    ("/v1/",),
    (CORE_KEY, ID_TOKEN),  # an ID token: a user's (seed 001's Bearer JWT), in their current tenant
    _FASTAPI_ERRORS,
    checks_json=True,
    summary="The HydraCore control plane (`/v1`, `X-Api-Key: hc_live_...`).",
)
PUBLIC = Surface(
    SurfaceId.SURFACE_PUBLIC,
    "public",
    ("/v1/public/",),
    (NO_CREDENTIAL, WIDGET_TOKEN),
    _FASTAPI_ERRORS,
    any_origin=True,
    summary="The website surface (`/v1/public`: no key, or `X-Widget-Token` for chat; limited per IP).",
)
MARKETPLACE = Surface(
    SurfaceId.SURFACE_MARKETPLACE,
    "marketplace",
    (
        *(
            f"/v1/{area}"
            for area in ("workflows", "deployments", "marketplace", "library", "users", "billing")
        ),
        "/v1/mcp/dep_",  # a deployment's MCP endpoint; /v1/mcp/api-key-context is HydraCore's
    ),
    (ID_TOKEN, NO_CREDENTIAL),  # none: Stripe's webhook, which signs its body instead
    MarketplaceEnvelope(),
    rate_headers=(*RATE_HEADERS, "x-ratelimit-reset"),
    json_names=True,
    plans=True,
    path_id_schema={"type": "string", "maxLength": 64},
    summary="The workflow marketplace (`/v1/workflows`, `/v1/deployments`, ...: an ID token as Bearer).",
)
INTERNAL = Surface(SurfaceId.SURFACE_INTERNAL, "internal", (), (), _FASTAPI_ERRORS)
SURFACES = (SUPPORT, CORE, PUBLIC, MARKETPLACE, INTERNAL)
# Answers the paths no surface claims (an unknown path's 404).
FALLBACK = CORE


def surface_of(surface_id: int) -> Surface:
    """The declared surface with this proto value."""
    return _the(
        SURFACES, "id", surface_id, f"surface {surface_id} is not declared in services.common.surfaces"
    )


def surface_named(name: str) -> Surface:
    """The declared surface with this name."""
    return _the(SURFACES, "name", name, f"no surface is named {name!r}")


def by_prefix(surfaces: Sequence[Surface] = SURFACES) -> list[tuple[str, Surface]]:
    """Every surface's prefixes, longest first (the order in which a path finds its surface)."""
    claims = [(prefix, surface) for surface in surfaces for prefix in surface.prefixes]
    return sorted(claims, key=lambda claim: len(claim[0]), reverse=True)


def surface_at(path: str) -> Surface:
    """The surface whose longest prefix `path` lies under; the fallback's where none claims it."""
    for prefix, surface in by_prefix():
        if path.startswith(prefix):
            return surface
    return FALLBACK


def envelopes() -> dict[str, Any]:
    """Every surface's OpenAPI error schemas, by name (each error body with its request id)."""
    schemas: dict[str, Any] = {}
    for surface in SURFACES:
        schemas.update(surface.envelope.schemas())
    for surface in SURFACES:
        for name in {surface.envelope.error_schema, surface.envelope.invalid_schema}:
            schemas[name]["properties"][REQUEST_ID_FIELD] = {
                "type": "string",
                "description": "The request's id, as in its x-request-id header: quote it to support.",
            }
    return schemas


def identified(body: dict[str, Any], request_id: str | None) -> dict[str, Any]:
    """An error body naming the request it answers (as it is without an id)."""
    return {**body, REQUEST_ID_FIELD: request_id} if request_id else body


def render(error: HydraError, surface: Surface, request_id: str | None = None) -> RenderedError:
    """Turns a domain error into the status and body of the caller's surface (bounded in size), naming
    the request when its id is known."""
    envelope = surface.envelope
    message = clip(error.message, _MESSAGE_CHARS)
    # ASCII-only JSON: it travels in gRPC metadata and HTTP headers.
    text = json.dumps(identified(envelope.body(error), request_id), ensure_ascii=True)
    if len(text) > MAX_ERROR_BODY_BYTES:  # a message or detail too long to carry: its gist
        text = json.dumps(identified(envelope.short(error, message), request_id), ensure_ascii=True)
    return RenderedError(error.grpc_status, envelope.status(error), text, message)
