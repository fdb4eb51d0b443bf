"""Composition root of the gatekeeper: the only module naming concrete adapters (DB, Redis)."""

from __future__ import annotations

from pathlib import Path

import grpc
from envoy.service.ratelimit.v3 import rls_pb2_grpc
from hydra.gatekeeper.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    api_keys_pb2,
    api_keys_pb2_grpc,
    auth_pb2,
    auth_pb2_grpc,
    context_pb2,
    context_pb2_grpc,
    keys_pb2,
    keys_pb2_grpc,
    tool_calls_pb2,
    tool_calls_pb2_grpc,
)

from edge.bindings import load_bindings
from edge.gatekeeper import models
from edge.gatekeeper.authorizer import Authorizer
from edge.gatekeeper.call_log import CALL_LOG_PURGE_SECONDS, CallLog
from edge.gatekeeper.config import Settings
from edge.gatekeeper.confirmations import CONFIRMATIONS_PURGE_SECONDS, Confirmations
from edge.gatekeeper.http_check import CheckServer
from edge.gatekeeper.instances import InstanceDirectory
from edge.gatekeeper.key_admin import KeyAdmin
from edge.gatekeeper.key_store import KeyStore
from edge.gatekeeper.limiter import Limiter, MemoryLimiter, RedisLimiter
from edge.gatekeeper.memberships import Memberships
from edge.gatekeeper.own_keys import OwnKeys
from edge.gatekeeper.own_keys_servicer import CoreKeyServicer, SupportKeyServicer
from edge.gatekeeper.servicer import (
    ApiKeyContextServicer,
    AuthServicer,
    KeyAdminServicer,
    KeyStatusServicer,
    RateLimitServicer,
    ToolCallLogServicer,
)
from edge.gatekeeper.tool_server import TOOL_PATHS, ToolServer, all_running, by_path
from edge.gatekeeper.users import UserDirectory
from edge.route_calls import RouteCalls
from edge.tools import tools
from services.common.asgi import AsgiListener
from services.common.crud import TenantTable
from services.common.process import Basics, Process, Wiring, every
from services.common.surfaces import ID_TOKEN


def build(basics: Basics[Settings]) -> Wiring:
    """Wires the gatekeeper's servicers and its ext_authz listener on its key store and limiter."""
    settings, db, logger = basics.settings, basics.db, basics.logger
    limiter: Limiter = RedisLimiter(settings.redis_url, logger) if settings.redis_url else MemoryLimiter()
    store = KeyStore(db=db, ttl=settings.key_cache_seconds)
    users = UserDirectory(
        settings.workflows_address, admin_token=settings.admin_token, ttl=settings.user_cache_seconds
    )
    bindings = load_bindings(settings.descriptor_set)
    # A member's role opens scopes of the routes that take ID tokens on keyed surfaces (HydraCore's).
    member_scopes = {
        b.access.scope for b in bindings if b.access.scope and b.access.surface.takes(ID_TOKEN.auth)
    }
    members = Memberships(db=db, scopes=member_scopes, ttl=settings.key_cache_seconds)
    authorizer = Authorizer(
        store=store,
        limiter=limiter,
        users=users,
        members=members,
        invalid_keys_per_minute=settings.invalid_keys_per_minute,
    )
    jwks = None
    if settings.oidc is not None and settings.oidc.embedded:
        issuer = settings.oidc.issuer_here()
        issuer.current_kid()  # the first signing key, made before Envoy first asks for the keys
        jwks = issuer.jwks
    checks = CheckServer(settings.check_address, authorizer, logger, jwks)
    rls = RateLimitServicer(limiter)
    instances = InstanceDirectory(settings.instances_address)
    key_admin = KeyAdmin(db=db, instances=instances)
    admin = KeyAdminServicer(key_admin, members, settings.admin_token)
    scopes = [b.access.scope for b in bindings if b.access.scope]
    key_context = ApiKeyContextServicer(key_admin, scopes)

    calls = RouteCalls(settings.peers, internal_token=settings.internal_token)
    confirmations = Confirmations(db, valid_for=settings.confirmations_valid_for)
    call_log = CallLog(db, keep=settings.call_log_retention, cursor_key=settings.cursor_key, logger=logger)
    own_keys = OwnKeys(db=db, admin=key_admin, table=TenantTable(models.api_keys), cursors=basics.cursors)
    tool_servers = {
        path: ToolServer(
            surface,
            tools(surface, settings.descriptor_set),
            authorizer=authorizer,
            calls=calls,
            confirmations=confirmations,
            call_log=call_log,
            logger=logger,
        )
        for path, surface in TOOL_PATHS.items()
    }
    listener = AsgiListener(
        settings.tools_address,
        by_path(tool_servers),
        logger,
        running=lambda: all_running(tool_servers.values()),
    )

    def register(server: grpc.aio.Server) -> None:
        rls_pb2_grpc.add_RateLimitServiceServicer_to_server(rls, server)
        admin_pb2_grpc.add_KeyAdminServiceServicer_to_server(admin, server)
        context_pb2_grpc.add_ApiKeyContextServiceServicer_to_server(key_context, server)
        keys_pb2_grpc.add_KeyStatusServiceServicer_to_server(KeyStatusServicer(key_admin), server)
        auth_pb2_grpc.add_AuthServiceServicer_to_server(AuthServicer(members), server)
        api_keys_pb2_grpc.add_SupportKeyServiceServicer_to_server(SupportKeyServicer(own_keys), server)
        api_keys_pb2_grpc.add_CoreKeyServiceServicer_to_server(CoreKeyServicer(own_keys), server)
        tool_calls_pb2_grpc.add_ToolCallLogServiceServicer_to_server(ToolCallLogServicer(call_log), server)

    async def start() -> None:
        await checks.start()  # Envoy's ext_authz checks arrive over HTTP/1.1, on a listener of their own
        if settings.tools_address:
            await call_log.start()
            await listener.start()

    return Wiring(
        register=register,
        background=[
            every(CALL_LOG_PURGE_SECONDS, call_log.purge, logger, "call log purge"),
            every(CONFIRMATIONS_PURGE_SECONDS, confirmations.purge, logger, "confirmation purge"),
        ],
        close=[
            listener.close,
            call_log.close,
            checks.close,
            calls.close,
            store.close,
            instances.close,
            users.close,
            limiter.close,
        ],
        start=start,
    )


PROCESS = Process(
    name="gatekeeper",
    module="edge.gatekeeper",
    schema="gatekeeper",
    migrations=Path(__file__).parent / "migrations",
    settings=Settings,
    services=[
        admin_pb2.DESCRIPTOR.services_by_name["KeyAdminService"],
        context_pb2.DESCRIPTOR.services_by_name["ApiKeyContextService"],
        keys_pb2.DESCRIPTOR.services_by_name["KeyStatusService"],
        auth_pb2.DESCRIPTOR.services_by_name["AuthService"],
        tool_calls_pb2.DESCRIPTOR.services_by_name["ToolCallLogService"],
        api_keys_pb2.DESCRIPTOR.services_by_name["SupportKeyService"],
        api_keys_pb2.DESCRIPTOR.services_by_name["CoreKeyService"],
    ],
    build=build,
    http_ports=("authz", "tools"),
    idempotency=models.idempotency_keys,
)
