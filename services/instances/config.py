"""The instances service's settings, read and validated once at start-up."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Self

from services.common import config
from services.common.delivery import ServiceSettings
from services.common.events.catalogue import ATTEMPT_SECONDS
from services.common.outbound import HostPolicy
from services.instances.webhook_sender import DEFAULT_RETRIES, SenderSettings


@dataclass(frozen=True, kw_only=True)
class Settings(ServiceSettings):
    """Where instances listens, its database, its events, where the gatekeeper's key admin answers, and
    how webhooks are sent."""

    gatekeeper_address: str
    model_hosts: HostPolicy
    webhook_hosts: HostPolicy
    sender: SenderSettings
    events_kept: dt.timedelta = dt.timedelta(days=30)
    admin_token: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        env = config.current_env() if env is None else env
        return cls(
            **cls.common(env, "instances"),
            gatekeeper_address=config.peer_address(env, "gatekeeper"),
            model_hosts=HostPolicy.from_env(env),
            # Hosts the operator lets webhooks reach at any address (loopback and private too).
            webhook_hosts=HostPolicy.named_in(env, "HYDRA_WEBHOOK_ALLOWED_HOSTS"),
            sender=sender_settings(env),
            events_kept=dt.timedelta(days=config.env_int(env, "HYDRA_EVENTS_KEPT_DAYS", 30, minimum=1)),
            admin_token=config.admin_token(env, create=True),
        )


def sender_settings(env: Mapping[str, str]) -> SenderSettings:
    """HYDRA_WEBHOOK_RETRY_SECONDS (the waits between attempts, comma-separated), HYDRA_WEBHOOK_CONCURRENCY,
    HYDRA_WEBHOOK_ENDPOINT_CONCURRENCY, HYDRA_WEBHOOK_TENANT_CONCURRENCY and HYDRA_WEBHOOK_TIMEOUT_SECONDS."""
    raw = env.get("HYDRA_WEBHOOK_RETRY_SECONDS")
    retries = DEFAULT_RETRIES
    if raw:
        try:
            retries = tuple(dt.timedelta(seconds=float(part)) for part in raw.split(","))
        except ValueError:
            raise config.ConfigError(f"HYDRA_WEBHOOK_RETRY_SECONDS must list seconds, got {raw!r}") from None
        if any(wait.total_seconds() < 0 for wait in retries):
            raise config.ConfigError("HYDRA_WEBHOOK_RETRY_SECONDS cannot wait a negative time")
    concurrency = config.env_int(env, "HYDRA_WEBHOOK_CONCURRENCY", 32, minimum=1)
    return SenderSettings(
        retries=retries,
        concurrency=concurrency,
        per_endpoint=min(
            concurrency, config.env_int(env, "HYDRA_WEBHOOK_ENDPOINT_CONCURRENCY", 4, minimum=1)
        ),
        per_tenant=min(concurrency, config.env_int(env, "HYDRA_WEBHOOK_TENANT_CONCURRENCY", 16, minimum=1)),
        timeout_seconds=float(
            config.env_int(env, "HYDRA_WEBHOOK_TIMEOUT_SECONDS", ATTEMPT_SECONDS, minimum=1)
        ),
    )
