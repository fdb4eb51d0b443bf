"""What the gatekeeper asks the instances service over gRPC: does this tenant have this instance?"""

from __future__ import annotations

import uuid

from hydra.instances.v1 import instances_pb2, instances_pb2_grpc

from services.common.peers import PeerChannel


class InstanceDirectory:
    """Looks up instances for a tenant; never reads the instances tables."""

    def __init__(self, address: str, *, timeout: float = 2.0) -> None:
        self._peer = PeerChannel(address, caller="gatekeeper", scopes=("instances:read",), timeout=timeout)
        self._instances = instances_pb2_grpc.InstanceServiceStub(self._peer.channel)

    async def exists(self, tenant_id: uuid.UUID, instance_id: uuid.UUID) -> bool:
        request = instances_pb2.GetInstanceRequest(instance_id=str(instance_id))
        found = await self._peer.lookup(
            self._instances.GetInstance,
            request,
            tenant_id,
            unavailable="The instances service is unavailable.",
        )
        return found is not None

    async def close(self) -> None:
        await self._peer.close()
