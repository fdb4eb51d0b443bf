"""Reads each RPC's access policy from the proto options: the one place routes and scopes come from."""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf.descriptor import FileDescriptor, MethodDescriptor, ServiceDescriptor
from hydra.options.v1 import options_pb2

from services.common.errors import Surface

AuthMode = options_pb2.AuthMode
RateLimitKey = options_pb2.RateLimitKey


@dataclass(frozen=True)
class MethodAccess:
    """Who may call one RPC, and which error surface answers them."""

    full_method: str  # "/hydra.crm.v1.LeadService/GetLead", as gRPC names it
    scope: str
    auth: int
    rate_limit_key: int
    requests_per_minute: int
    rate_limit_name: str

    @property
    def surface(self) -> Surface:
        return Surface.SUPPORT if self.auth == AuthMode.AUTH_MODE_SUPPORT_KEY else Surface.CORE

    @property
    def reads_raw_fields(self) -> bool:
        """Internal and operator RPCs take plain message fields, not a JSON body that parse_input reads."""
        return self.auth in (AuthMode.AUTH_MODE_INTERNAL, AuthMode.AUTH_MODE_ADMIN)

    @property
    def needs_identity(self) -> bool:
        """Key-authenticated, widget and internal RPCs act for a tenant; public ones do not."""
        return self.auth in (
            AuthMode.AUTH_MODE_SUPPORT_KEY,
            AuthMode.AUTH_MODE_CORE_KEY,
            AuthMode.AUTH_MODE_WIDGET_TOKEN,
            AuthMode.AUTH_MODE_INTERNAL,
        )


def method_access(method: MethodDescriptor) -> MethodAccess:
    """The access policy of one RPC; raises if the option is missing."""
    options = method.GetOptions()
    if not options.HasExtension(options_pb2.access):
        raise ValueError(f"{method.full_name} has no (hydra.options.v1.access) option")
    policy = options.Extensions[options_pb2.access]
    key = policy.rate_limit.key
    if key == RateLimitKey.RATE_LIMIT_KEY_UNSPECIFIED:
        key = (
            RateLimitKey.RATE_LIMIT_KEY_API_KEY
            if policy.auth in (AuthMode.AUTH_MODE_SUPPORT_KEY, AuthMode.AUTH_MODE_CORE_KEY)
            else RateLimitKey.RATE_LIMIT_KEY_NONE
        )
    return MethodAccess(
        full_method=f"/{method.containing_service.full_name}/{method.name}",
        scope=policy.scope,
        auth=policy.auth,
        rate_limit_key=key,
        requests_per_minute=policy.rate_limit.requests_per_minute,
        rate_limit_name=policy.rate_limit.name or method.name,
    )


def service_access(*services: ServiceDescriptor) -> dict[str, MethodAccess]:
    """Policies of every RPC of the given services, keyed by gRPC method path."""
    policies = {}
    for service in services:
        for method in service.methods:
            access = method_access(method)
            policies[access.full_method] = access
    return policies


def file_services(*files: FileDescriptor) -> list[ServiceDescriptor]:
    """Every service declared in the given proto files."""
    return [service for f in files for service in f.services_by_name.values()]
