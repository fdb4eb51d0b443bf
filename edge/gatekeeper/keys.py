"""API key formats: prefix by kind, random secret, SHA-256 hash as the only stored form."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from hydra.gatekeeper.v1 import admin_pb2

KIND_PREFIXES = {"hmcp": "hmcp_", "hc_live": "hc_live_", "widget": "hwt_"}
KIND_BY_PROTO = {
    admin_pb2.KEY_KIND_HMCP: "hmcp",
    admin_pb2.KEY_KIND_HC_LIVE: "hc_live",
    admin_pb2.KEY_KIND_WIDGET: "widget",
}
PROTO_BY_KIND = {kind: value for value, kind in KIND_BY_PROTO.items()}
_SECRET_BYTES = 32
_SHOWN_PREFIX = 12  # characters of the secret kept to recognise a key in listings


def hash_secret(secret: str) -> str:
    """The stored form of a secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


def kind_of(secret: str) -> str | None:
    """The kind a secret's prefix announces, or None if it has no known prefix."""
    for kind, prefix in KIND_PREFIXES.items():
        if secret.startswith(prefix) and len(secret) > len(prefix):
            return kind
    return None


@dataclass(frozen=True)
class NewSecret:
    """A freshly minted secret: shown once, then only its hash and prefix are kept."""

    secret: str
    hash: str
    prefix: str


def new_secret(kind: str) -> NewSecret:
    """Mints a random secret of the given kind."""
    secret = KIND_PREFIXES[kind] + secrets.token_urlsafe(_SECRET_BYTES)
    return NewSecret(secret=secret, hash=hash_secret(secret), prefix=secret[:_SHOWN_PREFIX])
