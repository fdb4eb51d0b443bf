"""What public asks the gatekeeper: which widget tokens are still live (to end a revoked token's streams)."""

from __future__ import annotations

import uuid
from collections.abc import Collection

from hydra.gatekeeper.v1 import keys_pb2, keys_pb2_grpc

from services.common.peers import PeerChannel

_UNAVAILABLE = "The gatekeeper is unavailable."


class KeyStatus:
    """The gatekeeper's key status service; never reads its tables."""

    def __init__(self, address: str, *, timeout: float) -> None:
        self._peer = PeerChannel(address, caller="public", scopes=("keys:read",), timeout=timeout)
        self._keys = keys_pb2_grpc.KeyStatusServiceStub(self._peer.channel)

    async def live(self, tenant_id: uuid.UUID, key_ids: Collection[str]) -> set[str]:
        """Those of `key_ids` that are live keys of the tenant; Unavailable when the gatekeeper cannot say."""
        found = await self._peer.lookup(
            self._keys.ListLiveKeys,
            keys_pb2.ListLiveKeysRequest(key_ids=sorted(key_ids)),
            tenant_id,
            unavailable=_UNAVAILABLE,
        )
        return set() if found is None else set(found.live_key_ids)

    async def close(self) -> None:
        await self._peer.close()
