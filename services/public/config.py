"""The public service's settings, read and validated once at start-up."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Self

from services.common import config
from services.common.delivery import ServiceSettings
from services.common.outbound import HostPolicy
from services.public.agents import AgentDefaults, AgentLimits
from services.public.widget import WidgetLimits


@dataclass(frozen=True, kw_only=True)
class Settings(ServiceSettings):
    """Where public listens, its database and events, its peers, the agents' defaults, the widget's caps."""

    crm_address: str
    instances_address: str
    gatekeeper_address: str
    agent: AgentDefaults
    agent_limits: AgentLimits
    agent_hosts: HostPolicy
    widget: WidgetLimits
    peer_timeout_seconds: float = 5.0
    site_cache_seconds: float = 5.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        env = config.current_env() if env is None else env
        return cls(
            **cls.common(env, "public"),
            crm_address=config.peer_address(env, "crm"),
            instances_address=config.peer_address(env, "instances"),
            gatekeeper_address=config.peer_address(env, "gatekeeper"),
            agent=AgentDefaults(
                base_url=env.get("HYDRA_AGENT_BASE_URL") or None,
                model=env.get("HYDRA_AGENT_MODEL") or None,
                api_key=env.get("HYDRA_AGENT_API_KEY") or None,
                timeout_seconds=float(config.env_int(env, "HYDRA_AGENT_TIMEOUT_SECONDS", 30, minimum=1)),
            ),
            agent_limits=AgentLimits(
                turn_seconds=float(config.env_int(env, "HYDRA_AGENT_TURN_SECONDS", 120, minimum=1)),
                max_reply_bytes=config.env_int(
                    env, "HYDRA_AGENT_MAX_REPLY_BYTES", 2 * 1024 * 1024, minimum=1024
                ),
                max_line_bytes=config.env_int(env, "HYDRA_AGENT_MAX_LINE_BYTES", 64 * 1024, minimum=1024),
                max_connections=config.env_int(env, "HYDRA_AGENT_MAX_CONNECTIONS", 100, minimum=1),
            ),
            agent_hosts=HostPolicy.from_env(env),
            widget=WidgetLimits(
                streams_per_ip=config.env_int(env, "HYDRA_WIDGET_STREAMS_PER_IP", 8, minimum=1),
                streams_per_instance=config.env_int(env, "HYDRA_WIDGET_STREAMS_PER_INSTANCE", 8, minimum=1),
                recheck_seconds=float(config.env_int(env, "HYDRA_WIDGET_RECHECK_SECONDS", 2, minimum=1)),
            ),
        )
