"""What public asks the instances service over gRPC: an instance's status, agent settings and knowledge."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from hydra.instances.v1 import instances_pb2, instances_pb2_grpc

from services.common.fields import value_to_python
from services.common.peers import PeerChannel
from services.public.agents import AgentSettings
from services.public.knowledge import KnowledgeEntry

_UNAVAILABLE = "The instances service is unavailable. Retry safe."


@dataclass(frozen=True)
class InstanceProfile:
    """What the widget needs to know about an instance."""

    id: uuid.UUID
    active: bool
    system_prompt: str | None
    agent: AgentSettings
    knowledge: tuple[KnowledgeEntry, ...]


class InstanceCatalog:
    """Reads a tenant's instances; never reads the instances service's tables."""

    def __init__(self, address: str, *, timeout: float) -> None:
        self._peer = PeerChannel(address, caller="public", scopes=("instances:read",), timeout=timeout)
        self._instances = instances_pb2_grpc.InstanceServiceStub(self._peer.channel)

    async def profile(self, tenant_id: uuid.UUID, instance_id: uuid.UUID) -> InstanceProfile | None:
        """The instance, or None if the tenant has no such instance."""
        found = await self._peer.lookup(
            self._instances.GetInstance,
            instances_pb2.GetInstanceRequest(instance_id=str(instance_id)),
            tenant_id,
            unavailable=_UNAVAILABLE,
        )
        if found is None:
            return None
        model = found.model
        max_tokens = value_to_python(model.max_tokens)
        return InstanceProfile(
            id=instance_id,
            active=found.status == "active",
            system_prompt=value_to_python(found.system_prompt),
            agent=AgentSettings(
                backend=model.backend,
                model=value_to_python(model.model),
                base_url=value_to_python(model.base_url),
                temperature=value_to_python(model.temperature),
                max_tokens=None if max_tokens is None else int(max_tokens),
            ),
            knowledge=tuple(KnowledgeEntry(title=k.title, content=k.content) for k in found.knowledge),
        )

    async def close(self) -> None:
        await self._peer.close()
