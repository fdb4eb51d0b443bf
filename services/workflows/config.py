"""The workflows service's settings, read and validated once at start-up."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Self

from services.common import config
from services.common.delivery import ServiceSettings
from services.workflows.billing import StripeSettings


@dataclass(frozen=True, kw_only=True)
class Settings(ServiceSettings):
    """Where workflows listens, its database, the operator's token, its MCP endpoints and Stripe."""

    admin_token: str | None = None  # None only in tests that build settings by hand: then refused
    mcp_address: str = "127.0.0.1:50056"  # deployments' MCP endpoints (HTTP), behind the edge
    public_base_url: str = "http://127.0.0.1:8080"  # where clients reach the edge
    stripe: StripeSettings | None = None  # None: plans are set by the operator

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        env = config.current_env() if env is None else env
        admin_token = config.admin_token(env, create=True)
        return cls(
            **cls.common(env, "workflows"),
            admin_token=admin_token,
            mcp_address=config.service_address(env, "mcp"),
            public_base_url=config.public_base_url(env),
            stripe=StripeSettings.from_env(env),
        )
