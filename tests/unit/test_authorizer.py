"""The gatekeeper's decision for one request: credential, kind, scope, instance, rate."""

import asyncio
import uuid

import pytest

from edge.gatekeeper.authorizer import Admission, Authorizer, RouteAccess
from edge.gatekeeper.key_store import KeyRecord
from edge.gatekeeper.limiter import MemoryLimiter
from services.common.access import PriorLimit
from services.common.errors import ForbiddenScope, RateLimited, Unauthenticated
from services.common.surfaces import CORE, CORE_KEY, PUBLIC, SUPPORT, SUPPORT_KEY, WIDGET_TOKEN

TENANT = uuid.uuid4()
INSTANCE = uuid.uuid4()
RECORDS = {
    "hmcp_reader": KeyRecord(uuid.uuid4(), TENANT, "hmcp", frozenset({"crm:read"}), 2, None),
    "hc_live_ops": KeyRecord(uuid.uuid4(), TENANT, "hc_live", frozenset({"instances:*"}), 60, None),
    "hwt_chat": KeyRecord(uuid.uuid4(), TENANT, "widget", frozenset(), 60, INSTANCE),
}


class FakeStore:
    def __init__(self) -> None:
        self.touched: list[uuid.UUID] = []

    async def find(self, secret: str, *, load: bool = True) -> KeyRecord | None:
        return RECORDS.get(secret)

    def touch(self, record: KeyRecord) -> None:
        self.touched.append(record.id)


def admit(
    route: RouteAccess,
    headers: dict[str, str],
    path: str = "/api/v1/leads",
    authorizer: Authorizer | None = None,
    client: str = "",
) -> Admission:
    authorizer = authorizer or Authorizer(store=FakeStore(), limiter=MemoryLimiter())  # type: ignore[arg-type]
    return asyncio.run(authorizer.admit(route, headers, path, client=client))


SUPPORT_READ = RouteAccess(SUPPORT, SUPPORT_KEY, scope="crm:read")


def test_bearer_key_is_admitted_with_identity_and_rate_headers() -> None:
    result = admit(SUPPORT_READ, {"authorization": "Bearer hmcp_reader"})
    assert result.error is None
    assert result.identity["x-hydra-tenant-id"] == str(TENANT)
    assert result.identity["x-hydra-scopes"] == "crm:read"
    assert result.rate_headers == {"x-ratelimit-limit": "2", "x-ratelimit-remaining": "1"}


def test_x_api_key_header_is_accepted_too() -> None:
    assert admit(SUPPORT_READ, {"x-api-key": "hmcp_reader"}).error is None


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"authorization": "Basic abc"},
        {"authorization": "Bearer "},
        {"authorization": "Bearer hmcp_unknown"},
        {"authorization": "Bearer hc_live_ops"},
        {"authorization": "Bearer garbage"},
    ],
)
def test_missing_malformed_unknown_or_wrong_kind_is_unauthenticated(headers: dict[str, str]) -> None:
    assert isinstance(admit(SUPPORT_READ, headers).error, Unauthenticated)


def test_missing_scope_is_forbidden_with_the_keys_scopes() -> None:
    error = admit(
        RouteAccess(SUPPORT, SUPPORT_KEY, scope="crm:write"), {"authorization": "Bearer hmcp_reader"}
    ).error
    assert isinstance(error, ForbiddenScope)
    assert error.message == "Missing required scope(s): crm:write. Your key has [crm:read]."


def test_wildcard_scope_covers_the_resource() -> None:
    route = RouteAccess(CORE, CORE_KEY, scope="instances:write")
    assert admit(route, {"x-api-key": "hc_live_ops"}, "/v1/instances").error is None


def test_limit_comes_from_the_key_and_refusal_carries_retry_after() -> None:
    authorizer = Authorizer(store=FakeStore(), limiter=MemoryLimiter())  # type: ignore[arg-type]
    headers = {"authorization": "Bearer hmcp_reader"}
    assert admit(SUPPORT_READ, headers, authorizer=authorizer).error is None
    assert admit(SUPPORT_READ, headers, authorizer=authorizer).error is None
    refused = admit(SUPPORT_READ, headers, authorizer=authorizer)
    assert isinstance(refused.error, RateLimited)
    assert refused.error.message == "Rate limit exceeded. Limit 2 requests per minute per API key."
    assert refused.rate_headers["x-ratelimit-remaining"] == "0"
    assert int(refused.rate_headers["retry-after"]) >= 1


def test_widget_token_only_opens_its_own_instance() -> None:
    route = RouteAccess(PUBLIC, WIDGET_TOKEN, instance_segment=3)
    headers = {"x-widget-token": "hwt_chat"}
    ok = admit(route, headers, f"/v1/public/widget/{INSTANCE}/chat")
    assert ok.error is None and ok.identity["x-hydra-instance-id"] == str(INSTANCE)
    assert isinstance(admit(route, headers, f"/v1/public/widget/{uuid.uuid4()}/chat").error, Unauthenticated)


WIDGET_LIMITED = RouteAccess(
    PUBLIC,
    WIDGET_TOKEN,
    instance_segment=3,
    prior_limits=(PriorLimit("client_ip", "PerIp", 3), PriorLimit("instance", "PerInstance", 5)),
)
CHAT_PATH = f"/v1/public/widget/{INSTANCE}/chat"


def test_one_ip_spends_only_its_own_window_never_the_instances_or_the_tokens() -> None:
    authorizer = Authorizer(store=FakeStore(), limiter=MemoryLimiter())  # type: ignore[arg-type]

    def from_ip(address: str) -> Admission:
        return admit(WIDGET_LIMITED, {"x-widget-token": "hwt_chat"}, CHAT_PATH, authorizer, client=address)

    flood = [from_ip("198.51.100.7") for _ in range(100)]
    assert [a.error is None for a in flood] == [True] * 3 + [False] * 97
    refused = flood[-1]
    assert isinstance(refused.error, RateLimited) and refused.error.message == "Rate limit exceeded"
    assert refused.rate_headers["x-ratelimit-limit"] == "3" and int(refused.rate_headers["retry-after"]) >= 1
    # 97 refusals later, the instance's window (5) and the token's (60) have counted only 3.
    other = from_ip("203.0.113.9")
    assert other.error is None
    assert other.rate_headers == {"x-ratelimit-limit": "5", "x-ratelimit-remaining": "1"}  # the tightest
    assert from_ip("203.0.113.10").error is None
    # The instance's window is shared by every address.
    assert isinstance(from_ip("203.0.113.11").error, RateLimited)


class CachingStore(FakeStore):
    """A store whose cache holds only the keys it was told about; loads are counted."""

    def __init__(self, cached: set[str]) -> None:
        super().__init__()
        self.cached = cached
        self.loads = 0

    async def find(self, secret: str, *, load: bool = True) -> KeyRecord | None:
        if secret in self.cached:
            return RECORDS.get(secret)
        if not load:
            return None
        self.loads += 1
        return RECORDS.get(secret)


def test_unknown_keys_from_one_address_are_refused_past_a_limit_without_lookups() -> None:
    store = CachingStore(cached={"hmcp_reader"})
    authorizer = Authorizer(store=store, limiter=MemoryLimiter(), invalid_keys_per_minute=3)  # type: ignore[arg-type]

    async def ask(secret: str, client: str) -> Admission:
        return await authorizer.admit(SUPPORT_READ, {"authorization": f"Bearer {secret}"}, "/", client=client)

    async def main() -> None:
        for n in range(3):
            assert isinstance((await ask(f"hmcp_guess{n}", "198.51.100.7")).error, Unauthenticated)
        refused = await ask("hmcp_guess3", "198.51.100.7")
        assert isinstance(refused.error, RateLimited)
        assert (
            refused.rate_headers["x-ratelimit-limit"] == "3" and int(refused.rate_headers["retry-after"]) >= 1
        )
        loads = store.loads
        for n in range(100):
            assert isinstance((await ask(f"hmcp_flood{n}", "198.51.100.7")).error, RateLimited)
        assert store.loads == loads  # refused before any lookup
        assert (await ask("hmcp_reader", "198.51.100.7")).error is None  # a cached key still works
        assert isinstance((await ask("hmcp_guess9", "203.0.113.9")).error, Unauthenticated)  # another address

    asyncio.run(main())
