"""What instances asks of the gatekeeper: revoke the widget tokens of a deleted instance."""

from __future__ import annotations

from hydra.gatekeeper.v1 import admin_pb2, admin_pb2_grpc

from services.common.events.bus import Event
from services.common.identity import admin_metadata
from services.common.peers import PeerChannel


class WidgetTokens:
    """The gatekeeper's key admin, as far as instances need it."""

    def __init__(self, address: str, *, admin_token: str | None, timeout: float = 5.0) -> None:
        self._peer = PeerChannel(address, caller="instances", scopes=(), timeout=timeout)
        self._admin = admin_pb2_grpc.KeyAdminServiceStub(self._peer.channel)
        self._metadata = (*admin_metadata(admin_token), *self._peer.token_metadata)
        self._timeout = timeout

    async def revoke_for_deleted_instance(self, event: Event) -> None:
        """Consumer of instance.deleted; revoking twice is harmless, so redelivery is too."""
        payload = event.payload
        # The announced instance; an event recorded before instance events were announced names its id.
        instance_id = payload["data"]["id"] if "data" in payload else payload["instance_id"]
        await self._admin.RevokeInstanceKeys(
            admin_pb2.RevokeInstanceKeysRequest(tenant_id=event.tenant_id, instance_id=instance_id),
            metadata=self._metadata,
            timeout=self._timeout,
            wait_for_ready=True,
        )

    async def close(self) -> None:
        await self._peer.close()
