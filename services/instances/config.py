"""The instances service's settings, read and validated once at start-up."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from services.common import config
from services.common.delivery import DeliverySettings
from services.common.outbound import HostPolicy


@dataclass(frozen=True)
class Settings:
    """Where instances listens, its database, and where the gatekeeper's key admin answers."""

    address: str
    database_url: str
    gatekeeper_address: str
    delivery: DeliverySettings
    model_hosts: HostPolicy
    admin_token: str | None = None
    log_level: str = "INFO"
    pool_size: int = 10

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = config.current_env() if env is None else env
        return cls(
            address=config.service_address(env, "instances"),
            database_url=config.env_str(
                env, "HYDRA_INSTANCES_DATABASE_URL", config.sqlite_default(env, "instances")
            ),
            gatekeeper_address=env.get("HYDRA_GATEKEEPER_ADDR") or config.service_address(env, "gatekeeper"),
            delivery=DeliverySettings.from_env(env),
            model_hosts=HostPolicy.from_env(env),
            admin_token=config.admin_token(env, create=True),
            log_level=config.env_str(env, "HYDRA_LOG_LEVEL", "INFO"),
            pool_size=config.env_int(env, "HYDRA_DB_POOL_SIZE", 10, minimum=1),
        )
