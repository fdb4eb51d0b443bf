"""Calls to another Hydra service over gRPC, acting for a tenant: found, not found, or unavailable."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import grpc

from services.common import config, tracing
from services.common.channels import CLIENT_OPTIONS, MAX_MESSAGE_BYTES, internal_metadata, token_metadata
from services.common.errors import HydraError, Unavailable
from services.common.logging import current_request_id
from services.common.surfaces import REQUEST_ID_HEADER


class PeerChannel:
    """A channel to one service; lookups map NOT_FOUND to None and any other failure to Unavailable.

    Every call carries the internal token (HYDRA_INTERNAL_TOKEN, read when the channel is made at
    start-up, unless given).
    """

    def __init__(
        self,
        address: str,
        *,
        caller: str,
        scopes: Sequence[str],
        timeout: float,
        internal_token: str | None = None,
    ) -> None:
        # Short reconnect backoff: a restarted peer is usable again within a fraction of a second.
        self.channel = grpc.aio.insecure_channel(
            address,
            options=[
                *CLIENT_OPTIONS,
                ("grpc.initial_reconnect_backoff_ms", 100),
                ("grpc.max_reconnect_backoff_ms", 1000),
                # An instance with 500 long knowledge entries is bigger than gRPC's 4 MB default.
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ],
            interceptors=tracing.client_interceptors(),
        )
        self._caller = caller
        self._scopes = tuple(scopes)
        self._timeout = timeout
        self._token = internal_token or config.internal_token()
        # For calls made on `channel` directly, beside their own metadata.
        self.token_metadata = token_metadata(self._token)

    async def lookup(
        self,
        method: Any,
        request: Any,
        tenant_id: uuid.UUID | str,
        *,
        unavailable: str,
        invalid: HydraError | None = None,
    ) -> Any:
        """The response, or None when the peer answers NOT_FOUND for this tenant; `invalid` is raised
        when the peer refuses the request's input (a value the caller passed on from its own caller)."""
        try:
            return await method(
                request, metadata=self.metadata(tenant_id), timeout=self._timeout, wait_for_ready=True
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return None
            if invalid is not None and error.code() == grpc.StatusCode.INVALID_ARGUMENT:
                raise invalid from None
            raise Unavailable(unavailable) from None

    def metadata(self, tenant_id: uuid.UUID | str) -> tuple[tuple[str, str], ...]:
        """What a call acting for `tenant_id` sends: the tenant, this caller, its scopes, the token, and
        the request it serves (the peer's log lines name it too)."""
        metadata = internal_metadata(
            str(tenant_id), self._scopes, key_id=self._caller, internal_token=self._token
        )
        request_id = current_request_id()
        return metadata if request_id is None else (*metadata, (REQUEST_ID_HEADER, request_id))

    @property
    def timeout(self) -> float:
        """Seconds a call may take."""
        return self._timeout

    async def ping(self) -> None:
        """Returns once the channel can connect."""
        await self.channel.channel_ready()

    async def close(self) -> None:
        await self.channel.close()
