"""instances over gRPC: each RPC delegates to its resource's shared request handling."""

from __future__ import annotations

from typing import Any

from hydra.instances.v1 import channels_pb2, channels_pb2_grpc, instances_pb2, instances_pb2_grpc

from services.common.fields import optional_query, parse_path_id, query_choice
from services.common.servicing import Context, ResourceRpcs
from services.instances.models import INSTANCE_STATUSES
from services.instances.service import INSTANCE_NOT_FOUND, ChannelService, InstanceService


class InstanceServicer(instances_pb2_grpc.InstanceServiceServicer):
    """InstanceService."""

    def __init__(self, service: InstanceService) -> None:
        self._rpc = ResourceRpcs(
            service,
            message=instances_pb2.Instance,
            input_message=instances_pb2.InstanceInput,
            singular="instance",
            plural="instances",
            id_field="instance_id",
        )

    async def ListInstances(
        self, request: instances_pb2.ListInstancesRequest, context: Context
    ) -> instances_pb2.ListInstancesResponse:
        status = query_choice(optional_query(request, "status"), "status", INSTANCE_STATUSES)
        return await self._rpc.list(request, instances_pb2.ListInstancesResponse, {"status": status})

    async def CreateInstance(
        self, request: instances_pb2.CreateInstanceRequest, context: Context
    ) -> instances_pb2.Instance:
        return await self._rpc.create(request, instances_pb2.Instance)

    async def GetInstance(
        self, request: instances_pb2.GetInstanceRequest, context: Context
    ) -> instances_pb2.Instance:
        return await self._rpc.get(request, instances_pb2.Instance)

    async def UpdateInstance(
        self, request: instances_pb2.UpdateInstanceRequest, context: Context
    ) -> instances_pb2.Instance:
        return await self._rpc.update(request, instances_pb2.Instance)

    async def DeleteInstance(
        self, request: instances_pb2.DeleteInstanceRequest, context: Context
    ) -> instances_pb2.DeleteInstanceResponse:
        return await self._rpc.delete(request, instances_pb2.DeleteInstanceResponse)


class ChannelServicer(channels_pb2_grpc.ChannelServiceServicer):
    """ChannelService: every call is within one instance of the caller's tenant."""

    def __init__(self, service: ChannelService) -> None:
        self._rpc = ResourceRpcs(
            service,
            message=channels_pb2.Channel,
            input_message=channels_pb2.ChannelInput,
            singular="channel",
            plural="channels",
            id_field="endpoint_id",
        )

    @staticmethod
    def _instance(request: Any) -> dict[str, Any]:
        return {
            "instance_id": parse_path_id(
                request.instance_id, param="instance_id", not_found=INSTANCE_NOT_FOUND
            )
        }

    async def ListChannels(
        self, request: channels_pb2.ListChannelsRequest, context: Context
    ) -> channels_pb2.ListChannelsResponse:
        return await self._rpc.list(request, channels_pb2.ListChannelsResponse, self._instance(request))

    async def CreateChannel(
        self, request: channels_pb2.CreateChannelRequest, context: Context
    ) -> channels_pb2.Channel:
        scope = self._instance(request)
        return await self._rpc.create(request, channels_pb2.Channel, scope)

    async def UpdateChannel(
        self, request: channels_pb2.UpdateChannelRequest, context: Context
    ) -> channels_pb2.Channel:
        return await self._rpc.update(request, channels_pb2.Channel, self._instance(request))

    async def DeleteChannel(
        self, request: channels_pb2.DeleteChannelRequest, context: Context
    ) -> channels_pb2.DeleteChannelResponse:
        scope = self._instance(request)
        return await self._rpc.delete(request, channels_pb2.DeleteChannelResponse, scope)
