"""The tenant's own keys over gRPC, on the Support and HydraCore surfaces: each surface's keys, in its
envelope."""

from __future__ import annotations

from typing import Any

from hydra.gatekeeper.v1 import api_keys_pb2, api_keys_pb2_grpc
from sqlalchemy import Row

from edge.gatekeeper.own_keys import KEY_NOT_FOUND, OwnKeys
from services.common.conditional import answer_version, require_match
from services.common.fields import optional_query, parse_input, parse_path_id
from services.common.identity import current_identity
from services.common.paging import descriptor_of
from services.common.servicing import Context, message_from, page_response

_INPUT = descriptor_of(api_keys_pb2.OwnKeyInput)


def own_key(row: Row[Any], secret: str | None = None) -> api_keys_pb2.OwnKey:
    """A key as its tenant sees it (with its secret only when just minted)."""
    return message_from(
        {**row._asdict(), "scopes": row.scopes.split(), "secret": secret}, api_keys_pb2.OwnKey
    )


def _still_at(row: Row[Any]) -> None:
    """Refuses a write the request's If-Match makes conditional on another version of the key."""
    require_match(lambda: own_key(row))


class _OwnKeyRpcs:
    """List, create, get, update and delete of the keys of one kind, each surface's RPCs calling them."""

    def __init__(self, keys: OwnKeys, kind: str) -> None:
        self._keys = keys
        self._kind = kind

    def _id(self, request: Any) -> Any:
        return parse_path_id(request.id, param="id", not_found=KEY_NOT_FOUND)

    async def _list(self, request: api_keys_pb2.ListOwnKeysRequest) -> api_keys_pb2.ListOwnKeysResponse:
        page = await self._keys.list(
            current_identity(),
            self._kind,
            limit=optional_query(request, "limit"),
            cursor=optional_query(request, "cursor"),
        )
        return page_response(
            api_keys_pb2.ListOwnKeysResponse, page, plural="keys", message=own_key, cursor=self._keys.cursor
        )

    async def _create(self, request: api_keys_pb2.CreateOwnKeyRequest) -> api_keys_pb2.OwnKey:
        fields = parse_input(request.key, _INPUT, partial=False)
        row, secret = await self._keys.mint(current_identity(), self._kind, fields)
        return own_key(row, secret)

    async def _get(self, request: api_keys_pb2.GetOwnKeyRequest) -> api_keys_pb2.OwnKey:
        key = own_key(await self._keys.get(current_identity(), self._kind, self._id(request)))
        answer_version(key, read=True)
        return key

    async def _update(self, request: api_keys_pb2.UpdateOwnKeyRequest) -> api_keys_pb2.OwnKey:
        key_id = self._id(request)
        fields = parse_input(request.key, _INPUT, partial=True)
        key = own_key(
            await self._keys.update(current_identity(), self._kind, key_id, fields, check=_still_at)
        )
        answer_version(key, read=False)
        return key

    async def _delete(self, request: api_keys_pb2.DeleteOwnKeyRequest) -> api_keys_pb2.DeleteOwnKeyResponse:
        await self._keys.revoke(current_identity(), self._kind, self._id(request), check=_still_at)
        return api_keys_pb2.DeleteOwnKeyResponse()


class SupportKeyServicer(_OwnKeyRpcs, api_keys_pb2_grpc.SupportKeyServiceServicer):
    """SupportKeyService: hmcp_ keys, each answer wrapped as {"key": ...}."""

    def __init__(self, keys: OwnKeys) -> None:
        super().__init__(keys, "hmcp")

    async def ListKeys(
        self, request: api_keys_pb2.ListOwnKeysRequest, context: Context
    ) -> api_keys_pb2.ListOwnKeysResponse:
        return await self._list(request)

    async def CreateKey(
        self, request: api_keys_pb2.CreateOwnKeyRequest, context: Context
    ) -> api_keys_pb2.OwnKeyResponse:
        return api_keys_pb2.OwnKeyResponse(key=await self._create(request))

    async def GetKey(
        self, request: api_keys_pb2.GetOwnKeyRequest, context: Context
    ) -> api_keys_pb2.OwnKeyResponse:
        return api_keys_pb2.OwnKeyResponse(key=await self._get(request))

    async def UpdateKey(
        self, request: api_keys_pb2.UpdateOwnKeyRequest, context: Context
    ) -> api_keys_pb2.OwnKeyResponse:
        return api_keys_pb2.OwnKeyResponse(key=await self._update(request))

    async def DeleteKey(
        self, request: api_keys_pb2.DeleteOwnKeyRequest, context: Context
    ) -> api_keys_pb2.DeleteOwnKeyResponse:
        return await self._delete(request)


class CoreKeyServicer(_OwnKeyRpcs, api_keys_pb2_grpc.CoreKeyServiceServicer):
    """CoreKeyService: hc_live_ keys, each answer the key itself."""

    def __init__(self, keys: OwnKeys) -> None:
        super().__init__(keys, "hc_live")

    async def ListCoreKeys(
        self, request: api_keys_pb2.ListOwnKeysRequest, context: Context
    ) -> api_keys_pb2.ListOwnKeysResponse:
        return await self._list(request)

    async def CreateCoreKey(
        self, request: api_keys_pb2.CreateOwnKeyRequest, context: Context
    ) -> api_keys_pb2.OwnKey:
        return await self._create(request)

    async def GetCoreKey(
        self, request: api_keys_pb2.GetOwnKeyRequest, context: Context
    ) -> api_keys_pb2.OwnKey:
        return await self._get(request)

    async def UpdateCoreKey(
        self, request: api_keys_pb2.UpdateOwnKeyRequest, context: Context
    ) -> api_keys_pb2.OwnKey:
        return await self._update(request)

    async def DeleteCoreKey(
        self, request: api_keys_pb2.DeleteOwnKeyRequest, context: Context
    ) -> api_keys_pb2.DeleteOwnKeyResponse:
        return await self._delete(request)
