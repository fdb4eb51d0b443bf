"""The users ID tokens name, as the workflows service knows them: found or made there, cached here."""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass

import grpc
from hydra.workflows.v1 import users_pb2, users_pb2_grpc

from services.common.errors import Unavailable
from services.common.identity import admin_metadata
from services.common.peers import PeerChannel


@dataclass(frozen=True)
class KnownUser:
    """A user's id and plan."""

    id: str
    plan: str


class UserDirectory:
    """Resolves a verified subject to its user over gRPC; answers stay cached for `ttl` seconds, so a new
    plan takes effect within that time."""

    def __init__(
        self, address: str, *, admin_token: str | None, ttl: float = 30.0, size: int = 100_000
    ) -> None:
        self._peer = PeerChannel(address, caller="gatekeeper", scopes=(), timeout=2.0)
        self._stub = users_pb2_grpc.UserAdminServiceStub(self._peer.channel)
        self._metadata = (*admin_metadata(admin_token), *self._peer.token_metadata)
        self._ttl = ttl
        self._size = size
        self._cache: OrderedDict[tuple[str, str], tuple[float, KnownUser]] = OrderedDict()

    async def resolve(self, subject: str, email: str) -> KnownUser:
        """The user with this subject (made on first sight); Unavailable when workflows cannot answer."""
        key = (subject, email)
        cached = self._cache.get(key)
        now = time.monotonic()
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            answer = await self._stub.ResolveUser(
                users_pb2.ResolveUserRequest(subject=subject, email=email),
                metadata=self._metadata,
                timeout=2.0,
            )
        except grpc.aio.AioRpcError:
            raise Unavailable("Sign-in is temporarily unavailable. Retry safe.") from None
        user = KnownUser(answer.user_id, answer.plan)
        self._cache[key] = (now + self._ttl, user)
        self._cache.move_to_end(key)
        while len(self._cache) > self._size:
            self._cache.popitem(last=False)
        return user

    async def close(self) -> None:
        await self._peer.close()
