"""The gatekeeper over gRPC: Envoy's rate-limit service, key admin, the calling key's context, live keys."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from envoy.config.core.v3 import base_pb2
from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc
from hydra.gatekeeper.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    auth_pb2,
    auth_pb2_grpc,
    context_pb2,
    context_pb2_grpc,
    keys_pb2,
    keys_pb2_grpc,
    tool_calls_pb2,
    tool_calls_pb2_grpc,
)
from sqlalchemy import Row

from edge.gatekeeper import keys
from edge.gatekeeper.authorizer import rate_headers
from edge.gatekeeper.call_log import CallLog
from edge.gatekeeper.key_admin import KeyAdmin
from edge.gatekeeper.limiter import Limiter
from edge.gatekeeper.memberships import Member, Memberships
from services.common.errors import NotFound
from services.common.fields import parse_input, parse_request, timestamp
from services.common.identity import current_identity, current_user, require_admin
from services.common.paging import descriptor_of
from services.common.servicing import Context
from services.common.surfaces import PUBLIC, surface_named


# xds-protos ships its generated modules without type information, so this base class is Any.
class RateLimitServicer(rls_pb2_grpc.RateLimitServiceServicer):  # type: ignore[misc]
    """Envoy's RateLimitService for public routes: one window per (policy, client IP) descriptor."""

    def __init__(self, limiter: Limiter) -> None:
        self._limiter = limiter

    async def ShouldRateLimit(
        self, request: rls_pb2.RateLimitRequest, context: Context
    ) -> rls_pb2.RateLimitResponse:
        verdicts = []
        surface = PUBLIC
        for descriptor in request.descriptors:
            entries = {e.key: e.value for e in descriptor.entries}
            name, _, rpm = entries.get("policy", "").rpartition(":")
            if not name or not rpm.isdigit() or "remote_address" not in entries:
                continue
            with contextlib.suppress(ValueError):  # the route's surface, as the edge config names it
                surface = surface_named(entries.get("surface", ""))
            verdicts.append(await self._limiter.hit(f"ip:{name}:{entries['remote_address']}", int(rpm)))
        if not verdicts:
            return rls_pb2.RateLimitResponse(overall_code=rls_pb2.RateLimitResponse.OK)
        worst = min(verdicts, key=lambda v: (v.allowed, v.remaining))
        headers = rate_headers(worst, surface)
        if worst.allowed:
            return rls_pb2.RateLimitResponse(
                overall_code=rls_pb2.RateLimitResponse.OK, response_headers_to_add=_plain_headers(headers)
            )
        # The body is the edge's: it names the request, which a rate-limit request does not carry.
        return rls_pb2.RateLimitResponse(
            overall_code=rls_pb2.RateLimitResponse.OVER_LIMIT, response_headers_to_add=_plain_headers(headers)
        )


def _plain_headers(values: dict[str, str]) -> list[base_pb2.HeaderValue]:
    return [base_pb2.HeaderValue(key=k, value=v) for k, v in values.items()]


def tenant_message(row: Row[Any]) -> admin_pb2.Tenant:
    return admin_pb2.Tenant(id=str(row.id), name=row.name, created_at=timestamp(row.created_at))


def key_message(row: Row[Any]) -> admin_pb2.ApiKey:
    message = admin_pb2.ApiKey(
        id=str(row.id),
        tenant_id=str(row.tenant_id),
        kind=keys.PROTO_BY_KIND[row.kind],
        prefix=row.prefix,
        scopes=row.scopes.split(),
        rate_limit_per_minute=row.rate_limit_per_minute,
        instance_id=str(row.instance_id) if row.instance_id else "",
        created_at=timestamp(row.created_at),
        name=row.name,
    )
    if row.last_used_at is not None:
        message.last_used_at.CopyFrom(timestamp(row.last_used_at))
    if row.revoked_at is not None:
        message.revoked_at.CopyFrom(timestamp(row.revoked_at))
    return message


class KeyAdminServicer(admin_pb2_grpc.KeyAdminServiceServicer):
    """Tenants and keys for hydractl, always behind the admin token (HYDRA_ADMIN_TOKEN or the data dir's)."""

    def __init__(self, admin: KeyAdmin, members: Memberships, admin_token: str | None) -> None:
        self._admin = admin
        self._members = members
        self._token = admin_token

    def _authorize(self, context: Context) -> None:
        require_admin(context.invocation_metadata() or (), self._token)

    async def CreateTenant(
        self, request: admin_pb2.CreateTenantRequest, context: Context
    ) -> admin_pb2.CreateTenantResponse:
        self._authorize(context)
        return admin_pb2.CreateTenantResponse(
            tenant=tenant_message(await self._admin.create_tenant(request.name))
        )

    async def ListTenants(
        self, request: admin_pb2.ListTenantsRequest, context: Context
    ) -> admin_pb2.ListTenantsResponse:
        self._authorize(context)
        return admin_pb2.ListTenantsResponse(
            tenants=[tenant_message(r) for r in await self._admin.list_tenants()]
        )

    async def AddMembership(
        self, request: admin_pb2.AddMembershipRequest, context: Context
    ) -> admin_pb2.AddMembershipResponse:
        self._authorize(context)
        fields = parse_request(request)
        await self._members.add(fields["user_id"], fields["tenant_id"], fields["role"])
        return admin_pb2.AddMembershipResponse(
            user_id=request.user_id, tenant_id=request.tenant_id, role=request.role
        )

    async def MintKey(self, request: admin_pb2.MintKeyRequest, context: Context) -> admin_pb2.MintKeyResponse:
        self._authorize(context)
        row, secret = await self._admin.mint(
            tenant_id=request.tenant_id,
            kind=keys.KIND_BY_PROTO.get(request.kind),
            scopes=list(request.scopes),
            rate_limit=request.rate_limit_per_minute,
            instance_id=request.instance_id,
            name=request.name,
        )
        return admin_pb2.MintKeyResponse(key=key_message(row), secret=secret)

    async def ListKeys(
        self, request: admin_pb2.ListKeysRequest, context: Context
    ) -> admin_pb2.ListKeysResponse:
        self._authorize(context)
        return admin_pb2.ListKeysResponse(
            keys=[key_message(r) for r in await self._admin.list_keys(request.tenant_id)]
        )

    async def RevokeKey(
        self, request: admin_pb2.RevokeKeyRequest, context: Context
    ) -> admin_pb2.RevokeKeyResponse:
        self._authorize(context)
        return admin_pb2.RevokeKeyResponse(key=key_message(await self._admin.revoke(request.id)))

    async def SetKeyLimit(
        self, request: admin_pb2.SetKeyLimitRequest, context: Context
    ) -> admin_pb2.SetKeyLimitResponse:
        self._authorize(context)
        row = await self._admin.set_limit(request.id, request.rate_limit_per_minute)
        return admin_pb2.SetKeyLimitResponse(key=key_message(row))

    async def RevokeInstanceKeys(
        self, request: admin_pb2.RevokeInstanceKeysRequest, context: Context
    ) -> admin_pb2.RevokeInstanceKeysResponse:
        self._authorize(context)
        revoked = await self._admin.revoke_instance_keys(request.tenant_id, request.instance_id)
        return admin_pb2.RevokeInstanceKeysResponse(revoked=revoked)


class ApiKeyContextServicer(context_pb2_grpc.ApiKeyContextServiceServicer):
    """GET /v1/mcp/api-key-context: the calling key as stored now (scopes and limit included)."""

    def __init__(self, admin: KeyAdmin, available_scopes: Sequence[str]) -> None:
        self._admin = admin
        self._available = sorted(set(available_scopes))

    async def GetApiKeyContext(
        self, request: context_pb2.GetApiKeyContextRequest, context: Context
    ) -> context_pb2.ApiKeyContext:
        key_id = current_identity().key_id
        if key_id.startswith("user:"):  # a signed-in user's ID token: there is no key to describe
            raise NotFound("This request was made with an ID token, not an API key")
        row = await self._admin.key(key_id)
        return context_pb2.ApiKeyContext(
            tenant_id=str(row.tenant_id),
            key_id=str(row.id),
            name=row.name,
            prefix=row.prefix,
            scopes=row.scopes.split(),
            rate_limit_per_minute=row.rate_limit_per_minute,
            available_scopes=self._available,
            created_at=timestamp(row.created_at),
        )


class KeyStatusServicer(keys_pb2_grpc.KeyStatusServiceServicer):
    """Which keys of the caller's tenant are live: services holding a stream open for a key ask it."""

    def __init__(self, admin: KeyAdmin) -> None:
        self._admin = admin

    async def ListLiveKeys(
        self, request: keys_pb2.ListLiveKeysRequest, context: Context
    ) -> keys_pb2.ListLiveKeysResponse:
        key_ids = parse_request(request).get("key_ids", [])
        live = await self._admin.live_keys(current_identity().tenant_id, key_ids)
        return keys_pb2.ListLiveKeysResponse(live_key_ids=live)


def _membership(member: Member) -> auth_pb2.TenantMembership:
    return auth_pb2.TenantMembership(
        tenant_id=str(member.tenant_id),
        name=member.name,
        role=member.role,
        scopes=sorted(member.scopes),
        current=member.current,
    )


class AuthServicer(auth_pb2_grpc.AuthServiceServicer):
    """The signed-in user's tenants on the HydraCore control plane."""

    def __init__(self, members: Memberships) -> None:
        self._members = members

    async def ListMyTenants(
        self, request: auth_pb2.ListMyTenantsRequest, context: Context
    ) -> auth_pb2.ListMyTenantsResponse:
        return auth_pb2.ListMyTenantsResponse(
            tenants=[_membership(m) for m in await self._members.of(current_user())]
        )

    async def SwitchTenant(
        self, request: auth_pb2.SwitchTenantRequest, context: Context
    ) -> auth_pb2.TenantMembership:
        fields = parse_input(request.switch, descriptor_of(auth_pb2.SwitchInput), partial=False)
        return _membership(await self._members.switch(current_user(), fields["tenant_id"]))


class ToolCallLogServicer(tool_calls_pb2_grpc.ToolCallLogServiceServicer):
    """The tenant's MCP call log, one surface's calls per route."""

    def __init__(self, log: CallLog) -> None:
        self._log = log

    async def _page(
        self, request: tool_calls_pb2.ListToolCallsRequest, surface: str
    ) -> tool_calls_pb2.ListToolCallsResponse:
        page = await self._log.page(
            current_identity().tenant_id,
            surface,
            limit=request.limit if request.HasField("limit") else None,
            cursor=request.cursor if request.HasField("cursor") else None,
        )
        return tool_calls_pb2.ListToolCallsResponse(
            calls=[
                tool_calls_pb2.ToolCall(
                    id=str(row.id),
                    key_id=row.key_id,
                    tool=row.tool,
                    scope=row.scope,
                    latency_ms=row.latency_ms,
                    status=row.status,
                    at=timestamp(row.at),
                )
                for row in page.rows
            ],
            count=len(page.rows),
            next_cursor=page.next_cursor,
        )

    async def ListSupportToolCalls(
        self, request: tool_calls_pb2.ListToolCallsRequest, context: Context
    ) -> tool_calls_pb2.ListToolCallsResponse:
        return await self._page(request, "support")

    async def ListCoreToolCalls(
        self, request: tool_calls_pb2.ListToolCallsRequest, context: Context
    ) -> tool_calls_pb2.ListToolCallsResponse:
        return await self._page(request, "core")
