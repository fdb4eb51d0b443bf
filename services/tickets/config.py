"""The tickets service's settings, read and validated once at start-up."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from services.common import config
from services.common.delivery import DeliverySettings


@dataclass(frozen=True)
class Settings:
    """Where tickets listens, its database, and where crm answers."""

    address: str
    database_url: str
    crm_address: str
    delivery: DeliverySettings
    log_level: str = "INFO"
    pool_size: int = 20
    crm_timeout_seconds: float = 2.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = config.current_env() if env is None else env
        return cls(
            address=config.service_address(env, "tickets"),
            database_url=config.env_str(
                env, "HYDRA_TICKETS_DATABASE_URL", config.sqlite_default(env, "tickets")
            ),
            crm_address=env.get("HYDRA_CRM_ADDR") or config.service_address(env, "crm"),
            delivery=DeliverySettings.from_env(env),
            log_level=config.env_str(env, "HYDRA_LOG_LEVEL", "INFO"),
            pool_size=config.env_int(env, "HYDRA_DB_POOL_SIZE", 20, minimum=1),
        )
