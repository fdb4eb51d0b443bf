"""Each RPC's access policy, parsed from the proto options in one place: its surface, who may call it,
and how it is rate limited. Servers read it from their descriptors, the edge from the descriptor set."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from google.api import annotations_pb2
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import ServiceDescriptor
from hydra.options.v1 import options_pb2

from services.common.surfaces import SERVICE_AUTH_MODES, Credential, Surface, credential_for, surface_of

AuthMode = options_pb2.AuthMode
RateLimitKey = options_pb2.RateLimitKey

# What a prior window counts by, as the edge config names it.
BY_CLIENT_IP, BY_INSTANCE = "client_ip", "instance"


@dataclass(frozen=True)
class PriorLimit:
    """A window a request must fit before the key's own: one per client IP or per instance."""

    key: str  # BY_CLIENT_IP or BY_INSTANCE
    name: str
    requests_per_minute: int

    @classmethod
    def parse_all(cls, text: str) -> tuple[PriorLimit, ...]:
        """From the edge config's "key:name:rpm,key:name:rpm"."""
        limits = []
        for item in filter(None, text.split(",")):
            key, name, rpm = item.split(":")
            if key not in (BY_CLIENT_IP, BY_INSTANCE) or not name or not rpm.isdigit():
                raise ValueError(f"bad prior limit {item!r}")
            limits.append(cls(key, name, int(rpm)))
        return tuple(limits)

    def encode(self) -> str:
        return f"{self.key}:{self.name}:{self.requests_per_minute}"


@dataclass(frozen=True)
class RateLimit:
    """A route's sliding one-minute window: what it counts by, how many, and its shared name."""

    key: int  # hydra.options.v1.RateLimitKey, never UNSPECIFIED
    requests_per_minute: int  # 0: the API key's own limit
    name: str


@dataclass(frozen=True)
class MethodAccess:
    """Who may call one RPC, how often, and the surface that answers them."""

    full_method: str  # "/hydra.crm.v1.LeadService/GetLead", as gRPC names it
    scope: str
    auth: int
    surface: Surface
    rate_limit: RateLimit
    prior_limits: tuple[PriorLimit, ...] = ()
    conditional: bool = False  # answers with an ETag; honours If-None-Match and If-Match
    http_write: bool = False  # bound to an HTTP POST, PUT, PATCH or DELETE
    idempotent: bool = False  # a write over HTTP for a key or a user: honours Idempotency-Key

    @property
    def rpc(self) -> str:
        """The RPC's full proto name: hydra.crm.v1.LeadService.GetLead."""
        return self.full_method.strip("/").replace("/", ".")

    @property
    def credential(self) -> Credential:
        """What an HTTP route of this RPC takes (only RPCs with an HTTP binding have one)."""
        return credential_for(self.auth)

    @property
    def reads_raw_fields(self) -> bool:
        """Internal and operator RPCs take plain message fields, not a JSON body that parse_input reads."""
        return self.auth in SERVICE_AUTH_MODES

    @property
    def needs_identity(self) -> bool:
        """Key-authenticated, widget and internal RPCs act for a tenant; public ones do not."""
        return self.auth in (
            AuthMode.AUTH_MODE_SUPPORT_KEY,
            AuthMode.AUTH_MODE_CORE_KEY,
            AuthMode.AUTH_MODE_WIDGET_TOKEN,
            AuthMode.AUTH_MODE_INTERNAL,
        )

    @property
    def acts_for_user(self) -> bool:
        """ID-token RPCs act for the user the token names, not for a tenant."""
        return self.auth == AuthMode.AUTH_MODE_ID_TOKEN


def parse_access(
    full_method: str,
    method_options: descriptor_pb2.MethodOptions,
    service_options: descriptor_pb2.ServiceOptions,
) -> MethodAccess:
    """The access policy of one RPC from its options and its service's; raises on a policy that is
    missing or contradicts itself (the generators and servers refuse to start on one)."""
    if not method_options.HasExtension(options_pb2.access):
        raise ValueError(f"{full_method} has no (hydra.options.v1.access) option")
    policy = method_options.Extensions[options_pb2.access]
    surface_id = policy.surface or service_options.Extensions[options_pb2.surface]
    if not surface_id:
        raise ValueError(f"{full_method}: neither it nor its service names a (hydra.options.v1.surface)")
    surface = surface_of(surface_id)
    if policy.auth not in SERVICE_AUTH_MODES and not surface.takes(policy.auth):
        raise ValueError(f"{full_method}: the {surface.name} surface takes no auth mode {policy.auth}")
    key = policy.rate_limit.key
    if key == RateLimitKey.RATE_LIMIT_KEY_UNSPECIFIED:
        key = (
            RateLimitKey.RATE_LIMIT_KEY_API_KEY
            if policy.auth in (AuthMode.AUTH_MODE_SUPPORT_KEY, AuthMode.AUTH_MODE_CORE_KEY)
            else RateLimitKey.RATE_LIMIT_KEY_NONE
        )
    http_write = _writes_over_http(method_options)
    rpc = full_method.strip("/").replace("/", ".")
    return MethodAccess(
        full_method=full_method,
        scope=policy.scope,
        auth=policy.auth,
        surface=surface,
        rate_limit=RateLimit(key, policy.rate_limit.requests_per_minute, policy.rate_limit.name or rpc),
        prior_limits=_prior_limits(full_method, policy),
        conditional=policy.conditional,
        http_write=http_write,
        idempotent=http_write and policy.auth in _KEYED_OR_SIGNED_IN,
    )


# Callers whose Idempotency-Keys are their own: a public route's or a widget's callers share a tenant
# and a public token, and one must never be handed another's answer.
_KEYED_OR_SIGNED_IN = (
    AuthMode.AUTH_MODE_SUPPORT_KEY,
    AuthMode.AUTH_MODE_CORE_KEY,
    AuthMode.AUTH_MODE_ID_TOKEN,
)


def _writes_over_http(method_options: descriptor_pb2.MethodOptions) -> bool:
    """Whether the RPC's HTTP binding is a POST, PUT, PATCH or DELETE."""
    if not method_options.HasExtension(annotations_pb2.http):
        return False
    return method_options.Extensions[annotations_pb2.http].WhichOneof("pattern") in (
        "post",
        "put",
        "patch",
        "delete",
    )


def _prior_limits(full_method: str, policy: options_pb2.AccessPolicy) -> tuple[PriorLimit, ...]:
    """The windows checked before the key's: per client IP on any keyed route, per instance on widget
    routes (a widget token names its instance)."""
    limits = []
    for limit in policy.prior_rate_limits:
        if limit.key == RateLimitKey.RATE_LIMIT_KEY_CLIENT_IP:
            key = BY_CLIENT_IP
        elif (
            limit.key == RateLimitKey.RATE_LIMIT_KEY_INSTANCE
            and policy.auth == AuthMode.AUTH_MODE_WIDGET_TOKEN
        ):
            key = BY_INSTANCE
        else:
            raise ValueError(
                f"{full_method}: a prior rate limit counts per client IP, or per instance on widget routes"
            )
        if not limit.name.isidentifier() or limit.requests_per_minute < 1:
            raise ValueError(f"{full_method}: a prior rate limit needs a name and requests_per_minute")
        limits.append(PriorLimit(key, limit.name, limit.requests_per_minute))
    return tuple(limits)


def service_access(services: Iterable[ServiceDescriptor]) -> dict[str, MethodAccess]:
    """Policies of every RPC of the given services, keyed by gRPC method path."""
    policies = {}
    for service in services:
        for method in service.methods:
            full_method = f"/{service.full_name}/{method.name}"
            policies[full_method] = parse_access(full_method, method.GetOptions(), service.GetOptions())
    return policies
