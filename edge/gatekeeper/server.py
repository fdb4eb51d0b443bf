"""Composition root of the gatekeeper: the only module naming concrete adapters (DB, Redis)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
from envoy.service.ratelimit.v3 import rls_pb2_grpc
from hydra.gatekeeper.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    context_pb2,
    context_pb2_grpc,
    keys_pb2,
    keys_pb2_grpc,
)

from edge.bindings import load_bindings
from edge.gatekeeper.authorizer import Authorizer
from edge.gatekeeper.config import Settings
from edge.gatekeeper.http_check import CheckServer
from edge.gatekeeper.instances import InstanceDirectory
from edge.gatekeeper.key_admin import KeyAdmin
from edge.gatekeeper.key_store import KeyStore
from edge.gatekeeper.limiter import Limiter, MemoryLimiter, RedisLimiter
from edge.gatekeeper.servicer import (
    ApiKeyContextServicer,
    KeyAdminServicer,
    KeyStatusServicer,
    RateLimitServicer,
)
from services.common import logging as hydra_logging
from services.common.db import Database
from services.common.grpc_server import GrpcApp
from services.common.grpc_server import serve as serve_app
from services.common.migrations import upgrade

SCHEMA = "gatekeeper"
MIGRATIONS = Path(__file__).parent / "migrations"
SERVICES = [
    admin_pb2.DESCRIPTOR.services_by_name["KeyAdminService"],
    context_pb2.DESCRIPTOR.services_by_name["ApiKeyContextService"],
    keys_pb2.DESCRIPTOR.services_by_name["KeyStatusService"],
]


def build(settings: Settings) -> GrpcApp:
    """Wires the gatekeeper from settings."""
    logger = hydra_logging.configure("gatekeeper", settings.log_level)
    db = Database(settings.database_url, schema=SCHEMA)
    limiter: Limiter = RedisLimiter(settings.redis_url, logger) if settings.redis_url else MemoryLimiter()
    store = KeyStore(db=db, ttl=settings.key_cache_seconds)
    authorizer = Authorizer(
        store=store, limiter=limiter, invalid_keys_per_minute=settings.invalid_keys_per_minute
    )
    checks = CheckServer(settings.check_address, authorizer, logger)
    rls = RateLimitServicer(limiter)
    instances = InstanceDirectory(settings.instances_address)
    key_admin = KeyAdmin(db=db, instances=instances)
    admin = KeyAdminServicer(key_admin, settings.admin_token)
    scopes = [b.access.scope for b in load_bindings(settings.descriptor_set) if b.access.scope]
    key_context = ApiKeyContextServicer(key_admin, scopes)

    def register(server: grpc.aio.Server) -> None:
        rls_pb2_grpc.add_RateLimitServiceServicer_to_server(rls, server)
        admin_pb2_grpc.add_KeyAdminServiceServicer_to_server(admin, server)
        context_pb2_grpc.add_ApiKeyContextServiceServicer_to_server(key_context, server)
        keys_pb2_grpc.add_KeyStatusServiceServicer_to_server(KeyStatusServicer(key_admin), server)

    async def close() -> None:
        await checks.close()
        await store.close()
        await instances.close()
        await limiter.close()
        await db.dispose()

    # Health follows the key store only: with Redis down the gatekeeper still serves (in-process limits).
    return GrpcApp(
        name="gatekeeper",
        address=settings.address,
        services=SERVICES,
        register=register,
        probe=db.ping,
        close=close,
        start=checks.start,
    )


def migrate(settings: Settings) -> None:
    """Applies the gatekeeper's migrations."""
    upgrade(migrations_dir=MIGRATIONS, url=settings.database_url, schema=SCHEMA)


async def serve(settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    """Runs the gatekeeper until stopped."""
    app = build(settings)
    await serve_app(app, hydra_logging.configure("gatekeeper", settings.log_level), stop=stop)
