"""The crm service's settings, read and validated once at start-up."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from services.common import config
from services.common.delivery import DeliverySettings


@dataclass(frozen=True)
class Settings:
    """Where crm listens and which database it owns."""

    address: str
    database_url: str
    delivery: DeliverySettings
    log_level: str = "INFO"
    pool_size: int = 20

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = config.current_env() if env is None else env
        return cls(
            address=config.service_address(env, "crm"),
            database_url=config.env_str(env, "HYDRA_CRM_DATABASE_URL", config.sqlite_default(env, "crm")),
            delivery=DeliverySettings.from_env(env),
            log_level=config.env_str(env, "HYDRA_LOG_LEVEL", "INFO"),
            pool_size=config.env_int(env, "HYDRA_DB_POOL_SIZE", 20, minimum=1),
        )
