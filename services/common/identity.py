"""The caller's identity as the edge vouches for it in request metadata, and scope matching."""

from __future__ import annotations

import contextvars
import hmac
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from services.common.errors import ForbiddenScope, Unauthenticated

TENANT_HEADER = "x-hydra-tenant-id"
KEY_HEADER = "x-hydra-key-id"
SCOPES_HEADER = "x-hydra-scopes"
INSTANCE_HEADER = "x-hydra-instance-id"
# The user a verified ID token names (marketplace routes), as the gatekeeper resolved it.
USER_HEADER = "x-hydra-user-id"
IDENTITY_HEADERS = (TENANT_HEADER, KEY_HEADER, SCOPES_HEADER, INSTANCE_HEADER, USER_HEADER)
# The shared secret (HYDRA_INTERNAL_TOKEN) that Envoy and internal callers send to vouch for the rest.
INTERNAL_TOKEN_HEADER = "x-hydra-internal-token"
# The operator's secret (HYDRA_ADMIN_TOKEN or the data dir's) on every call of an admin RPC.
ADMIN_TOKEN_HEADER = "x-hydra-admin-token"


def admin_metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    """The metadata that carries the admin token (none without one)."""
    return ((ADMIN_TOKEN_HEADER, token),) if token else ()


def require_admin(metadata: Iterable[tuple[str, Any]], token: str | None) -> None:
    """Raises unless `metadata` carries the admin token (compared in constant time); refuses all
    without one."""
    sent = text_metadata(metadata).get(ADMIN_TOKEN_HEADER, "")
    if token is None or not hmac.compare_digest(sent.encode(), token.encode()):
        raise Unauthenticated("Invalid admin token.")


def text_metadata(metadata: Iterable[tuple[str, str | bytes]] | None) -> dict[str, str]:
    """A call's metadata by key, text values only: no binary ("-bin") entry is ever read by name."""
    return {key: value for key, value in metadata or () if isinstance(value, str)}


def vouched(metadata: Iterable[tuple[str, Any]], token: bytes) -> bool:
    """Whether `metadata` carries the internal token (compared in constant time)."""
    for key, value in metadata:
        if key == INTERNAL_TOKEN_HEADER:
            sent = value.encode() if isinstance(value, str) else bytes(value)
            return hmac.compare_digest(sent, token)
    return False


# The client's address as the edge determined it (trusted proxies honoured), set by the edge on the
# routes limited per client IP, overwriting whatever a client sent.
CLIENT_IP_HEADER = "x-hydra-client-ip"


@dataclass(frozen=True)
class Identity:
    """Who is calling: a tenant, the key it used, the key's scopes, and a widget token's instance."""

    tenant_id: uuid.UUID
    key_id: str
    scopes: frozenset[str]
    instance_id: str = ""

    def require(self, scope: str) -> None:
        """Raises forbidden_scope unless this identity carries `scope`."""
        if scope and not has_scope(self.scopes, scope):
            raise ForbiddenScope(scope, self.scopes)


def has_scope(granted: Iterable[str], required: str) -> bool:
    """True if `granted` holds `required` exactly or as `resource:*`."""
    granted = set(granted)
    if required in granted:
        return True
    resource, _, _ = required.partition(":")
    return f"{resource}:*" in granted


def scopes_header(scopes: Iterable[str]) -> str:
    """The wire form of a scope set: sorted, space-separated."""
    return " ".join(sorted(scopes))


def identity_from_metadata(metadata: Mapping[str, str]) -> Identity:
    """Builds the identity the edge (or an internal caller) put in metadata."""
    tenant = metadata.get(TENANT_HEADER)
    if not tenant:
        raise Unauthenticated("Missing caller identity.")
    try:
        tenant_id = uuid.UUID(tenant)
    except ValueError:
        raise Unauthenticated("Malformed caller identity.") from None
    scopes = frozenset(metadata.get(SCOPES_HEADER, "").split())
    return Identity(
        tenant_id=tenant_id,
        key_id=metadata.get(KEY_HEADER, ""),
        scopes=scopes,
        instance_id=metadata.get(INSTANCE_HEADER, ""),
    )


def user_from_metadata(metadata: Mapping[str, str]) -> uuid.UUID:
    """The user the edge put in metadata (marketplace routes)."""
    try:
        return uuid.UUID(metadata[USER_HEADER])
    except (KeyError, ValueError):
        raise Unauthenticated("Missing caller identity.") from None


_current: contextvars.ContextVar[Identity] = contextvars.ContextVar("hydra_identity")
_current_user: contextvars.ContextVar[uuid.UUID] = contextvars.ContextVar("hydra_user")


def set_current(identity: Identity) -> contextvars.Token[Identity]:
    """Binds the identity for the running RPC (done by the server interceptor)."""
    return _current.set(identity)


def reset_current(token: contextvars.Token[Identity]) -> None:
    """Unbinds the identity bound by set_current."""
    _current.reset(token)


def set_current_user(user_id: uuid.UUID) -> contextvars.Token[uuid.UUID]:
    """Binds the signed-in user for the running RPC (done by the server interceptor)."""
    return _current_user.set(user_id)


def reset_current_user(token: contextvars.Token[uuid.UUID]) -> None:
    """Unbinds the user bound by set_current_user."""
    _current_user.reset(token)


def current_user() -> uuid.UUID:
    """The signed-in user of the running RPC."""
    try:
        return _current_user.get()
    except LookupError:
        raise Unauthenticated("Missing caller identity.") from None


def current_identity() -> Identity:
    """The identity of the running RPC."""
    try:
        return _current.get()
    except LookupError:
        raise Unauthenticated("Missing caller identity.") from None
