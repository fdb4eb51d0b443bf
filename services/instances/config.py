"""The instances service's settings, read and validated once at start-up."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Self

from services.common import config
from services.common.delivery import ServiceSettings
from services.common.outbound import HostPolicy


@dataclass(frozen=True, kw_only=True)
class Settings(ServiceSettings):
    """Where instances listens, its database, its events, and where the gatekeeper's key admin answers."""

    gatekeeper_address: str
    model_hosts: HostPolicy
    admin_token: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        env = config.current_env() if env is None else env
        return cls(
            **cls.common(env, "instances"),
            gatekeeper_address=config.peer_address(env, "gatekeeper"),
            model_hosts=HostPolicy.from_env(env),
            admin_token=config.admin_token(env, create=True),
        )
