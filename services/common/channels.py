"""The client side of internal gRPC: channel options (the server's too) and the metadata a caller sends."""

from __future__ import annotations

from collections.abc import Sequence

from services.common import identity as ident

# Servers and channels: no bandwidth-delay probing. Its PING frames grow flow-control windows for
# long fat links; between Envoy and services on one network they only cost CPU (~7% per request).
HTTP2_OPTIONS = (("grpc.http2.bdp_probe", 0),)
# A caller's channel spreads its calls over every address its target resolves to (a server's replicas:
# "ipv4:a:1,b:2", or a DNS name with several records) instead of sending all of them to the first.
CLIENT_OPTIONS = (*HTTP2_OPTIONS, ("grpc.lb_policy_name", "round_robin"))
# The largest valid message (an instance with 500 entries of 20,000 characters is ~40 MB as UTF-8).
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


def internal_metadata(
    tenant_id: str, scopes: Sequence[str], key_id: str = "internal", *, internal_token: str | None = None
) -> tuple[tuple[str, str], ...]:
    """Metadata an internal gRPC caller sends to act for a tenant (with the internal token, if one is set)."""
    return (
        (ident.TENANT_HEADER, tenant_id),
        (ident.KEY_HEADER, key_id),
        (ident.SCOPES_HEADER, ident.scopes_header(scopes)),
        *token_metadata(internal_token),
    )


def token_metadata(internal_token: str | None) -> tuple[tuple[str, str], ...]:
    """The internal token as call metadata (none when no token is set)."""
    return ((ident.INTERNAL_TOKEN_HEADER, internal_token),) if internal_token else ()
