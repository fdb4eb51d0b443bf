"""The workflows service's settings, read and validated once at start-up."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Self

from services.common import config
from services.common.delivery import ServiceSettings
from services.workflows.billing import StripeSettings


@dataclass(frozen=True, kw_only=True)
class Settings(ServiceSettings):
    """Where workflows listens, its database, the operator's token and the key its cursors are signed with."""

    admin_token: str | None = None  # None only in tests that build settings by hand: then refused
    cursor_key: bytes = b""
    mcp_address: str = "127.0.0.1:50056"  # deployments' MCP endpoints (HTTP), behind the edge
    public_base_url: str = "http://127.0.0.1:8080"  # where clients reach the edge
    stripe: StripeSettings | None = None  # None: plans are set by the operator

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        env = config.current_env() if env is None else env
        admin_token = config.admin_token(env, create=True)
        # Every replica signs and checks cursors with one key, derived from a secret they all share.
        secret = (admin_token or "").encode()
        return cls(
            **cls.common(env, "workflows"),
            admin_token=admin_token,
            cursor_key=hmac.new(secret, b"hydra workflows cursors", hashlib.sha256).digest(),
            mcp_address=config.service_address(env, "mcp"),
            public_base_url=config.public_base_url(env),
            stripe=StripeSettings.from_env(env),
        )
