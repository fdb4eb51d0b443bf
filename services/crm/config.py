"""The crm service's settings, read and validated once at start-up."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Self

from services.common import config
from services.common.delivery import ServiceSettings


@dataclass(frozen=True, kw_only=True)
class Settings(ServiceSettings):
    """Where crm listens, which database it owns and where its events travel: what every service reads."""

    pool_size: int = 20

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        env = config.current_env() if env is None else env
        return cls(**cls.common(env, "crm"))
