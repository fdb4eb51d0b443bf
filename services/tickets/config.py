"""The tickets service's settings, read and validated once at start-up."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Self

from services.common import config
from services.common.delivery import ServiceSettings


@dataclass(frozen=True, kw_only=True)
class Settings(ServiceSettings):
    """Where tickets listens, its database, its events, and where crm answers."""

    crm_address: str
    pool_size: int = 20
    crm_timeout_seconds: float = 2.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        env = config.current_env() if env is None else env
        return cls(**cls.common(env, "tickets"), crm_address=config.peer_address(env, "crm"))
