"""The gatekeeper's settings, read and validated once at start-up."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from edge.bindings import DESCRIPTOR_SET
from edge.gatekeeper.authorizer import DEFAULT_INVALID_KEYS_PER_MINUTE
from edge.gatekeeper.issuer import OidcSettings
from services.common import config


@dataclass(frozen=True, kw_only=True)
class Settings(config.ProcessSettings):
    """Where the gatekeeper listens, its key store, its rate-limit backend, and where instances answer."""

    check_address: str  # HTTP/1.1, for Envoy's ext_authz
    instances_address: str
    workflows_address: str = ""
    tools_address: str = ""  # the MCP servers of the keyed APIs (HTTP); "" serves none
    peers: Mapping[str, str] = field(default_factory=dict)  # cluster -> where its service answers gRPC
    internal_token: str | None = None
    call_log_retention: dt.timedelta = dt.timedelta(days=7)  # as long as the event records are kept
    confirmations_valid_for: dt.timedelta = dt.timedelta(minutes=5)  # a previewed write's token
    redis_url: str | None = None
    admin_token: str | None = None  # None only in tests that build settings by hand: then refused
    key_cache_seconds: float = 0.5
    user_cache_seconds: float = 30.0  # how long a user's plan may be stale
    invalid_keys_per_minute: int = DEFAULT_INVALID_KEYS_PER_MINUTE  # per client address
    descriptor_set: Path = DESCRIPTOR_SET
    oidc: OidcSettings | None = None  # None only in tests that build settings by hand: no JWKS served

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        env = config.current_env() if env is None else env
        cache_ms = config.env_int(env, "HYDRA_KEY_CACHE_MS", 500, minimum=0)
        if cache_ms > 900:
            raise config.ConfigError(
                "HYDRA_KEY_CACHE_MS must be at most 900: a revoked key must fail within 1 s"
            )
        return cls(
            **cls.common(env, "gatekeeper"),
            check_address=config.service_address(env, "authz"),
            instances_address=config.peer_address(env, "instances"),
            workflows_address=config.peer_address(env, "workflows"),
            tools_address=config.service_address(env, "tools"),
            peers={
                name: config.peer_address(env, name)
                for name in ("crm", "tickets", "instances", "public", "gatekeeper")
            },
            internal_token=config.internal_token(env),
            call_log_retention=dt.timedelta(
                hours=config.env_int(env, "HYDRA_EVENTS_RETENTION_HOURS", 168, minimum=1)
            ),
            confirmations_valid_for=dt.timedelta(
                seconds=config.env_int(env, "HYDRA_MCP_CONFIRM_SECONDS", 300, minimum=10)
            ),
            redis_url=env.get("HYDRA_REDIS_URL") or None,
            admin_token=config.admin_token(env, create=True),
            key_cache_seconds=cache_ms / 1000,
            user_cache_seconds=config.env_int(env, "HYDRA_USER_CACHE_MS", 30_000, minimum=0) / 1000,
            invalid_keys_per_minute=config.env_int(
                env, "HYDRA_INVALID_KEYS_PER_MINUTE", DEFAULT_INVALID_KEYS_PER_MINUTE, minimum=1
            ),
            descriptor_set=Path(env.get("HYDRA_DESCRIPTOR_SET") or DESCRIPTOR_SET),
            oidc=OidcSettings.from_env(env),
        )
