"""Conditional requests on one resource (RFC 9110 section 13), for RPCs whose access option says
`conditional`: its ETag names its current version, GET with If-None-Match answers 304 while it still
has that version, and a write with If-Match is refused (412) once it does not."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from google.protobuf.message import Message

from services.common.errors import PreconditionFailed
from services.common.exchange import HTTP_STATUS_HEADER, current_exchange

ETAG = "etag"
IF_MATCH = "if-match"
IF_NONE_MATCH = "if-none-match"
_STALE = "The resource has changed since the version If-Match names; read it again, then retry."
_UNKEPT = "This route keeps no versions (no ETag), so it cannot honour If-Match; send the write without it."


def etag(resource: Message) -> str:
    """A strong entity tag for the resource's current version: a digest of its message as answered."""
    digest = hashlib.blake2b(resource.SerializeToString(deterministic=True), digest_size=12)
    return f'"{digest.hexdigest()}"'


def _listed(header: str) -> list[str]:
    """The entity tags of an If-Match or If-None-Match value (commas inside tags are not ours to meet)."""
    return [tag.strip() for tag in header.split(",") if tag.strip()]


def answer_version(resource: Message, *, read: bool) -> None:
    """Puts the resource's ETag on the answer; a read whose If-None-Match names that version (weak
    comparison) is answered 304, without a body (a write's answer is never replaced by 304)."""
    exchange = current_exchange()
    if not exchange.conditional:
        return
    tag = etag(resource)
    exchange.answer_headers[ETAG] = tag
    header = exchange.request_headers.get(IF_NONE_MATCH)
    if read and header is not None and any(t in ("*", tag, f"W/{tag}") for t in _listed(header)):
        exchange.answer_headers[HTTP_STATUS_HEADER] = "304"


def refuse_unkept_match() -> None:
    """Refuses (412) a write with If-Match on a route that keeps no versions: its condition cannot be
    checked, and ignoring it would let the write overwrite what the client meant to protect."""
    exchange = current_exchange()
    if not exchange.conditional and IF_MATCH in exchange.request_headers:
        raise PreconditionFailed(_UNKEPT)


def require_match(resource: Callable[[], Message]) -> None:
    """Refuses a write whose If-Match does not name the version of `resource()` (strong comparison: a
    weak tag never matches); without If-Match, does nothing (the resource is not even built)."""
    exchange = current_exchange()
    header = exchange.request_headers.get(IF_MATCH)
    if header is None or not exchange.conditional:
        return
    tag = etag(resource())
    if not any(listed in ("*", tag) for listed in _listed(header)):
        raise PreconditionFailed(_STALE)
