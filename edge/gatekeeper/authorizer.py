"""The decision on each request at the edge: identify the key, check scope and instance, rate limit."""

from __future__ import annotations

import math
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field

from edge.gatekeeper import keys
from edge.gatekeeper.key_store import KeyRecord, KeyStore
from edge.gatekeeper.limiter import Limiter, Verdict
from edge.gatekeeper.memberships import Memberships
from edge.gatekeeper.users import KnownUser, UserDirectory
from services.common.access import BY_CLIENT_IP, PriorLimit
from services.common.errors import (
    RATE_LIMIT_EXCEEDED,
    Forbidden,
    ForbiddenScope,
    HydraError,
    RateLimited,
    Unauthenticated,
)
from services.common.identity import USER_HEADER, has_scope
from services.common.plans import plan_named
from services.common.surfaces import ID_TOKEN, Credential, Surface, credential_named, surface_named


@dataclass(frozen=True)
class RouteAccess:
    """A route's policy, as the edge config hands it to each check."""

    surface: Surface
    credential: Credential
    scope: str = ""
    limit_name: str = ""
    requests_per_minute: int = 0  # 0: the key's own limit
    instance_segment: int = -1  # widget routes: which path segment holds the instance id
    prior_limits: tuple[PriorLimit, ...] = ()

    @classmethod
    def from_policy(cls, policy: Mapping[str, str]) -> RouteAccess:
        return cls(
            surface=surface_named(policy.get("surface", "")),
            credential=credential_named(policy.get("auth", "")),
            scope=policy.get("scope", ""),
            limit_name=policy.get("limit_name", ""),
            requests_per_minute=int(policy.get("requests_per_minute") or 0),
            instance_segment=int(policy.get("instance_segment") or -1),
            prior_limits=PriorLimit.parse_all(policy.get("prior_limits", "")),
        )


@dataclass
class Admission:
    """The outcome of Check: allowed with identity headers, or an error; rate headers either way."""

    error: HydraError | None = None
    identity: dict[str, str] = field(default_factory=dict)
    rate_headers: dict[str, str] = field(default_factory=dict)


def rate_headers(verdict: Verdict, surface: Surface) -> dict[str, str]:
    """The surface's rate-limit headers for a verdict: limit, remaining, retry-after when refused, and
    when the window frees a request (epoch seconds) where the surface says so."""
    limit, remaining, retry_after, *reset = surface.rate_headers
    headers = {limit: str(verdict.limit), remaining: str(verdict.remaining)}
    if not verdict.allowed:
        headers[retry_after] = str(verdict.retry_after)
    if reset:
        headers[reset[0]] = str(math.ceil(time.time() + verdict.reset_after))
    return headers


@dataclass(frozen=True)
class _Refusal:
    """A request a window refused: the error and the verdict its headers tell."""

    error: HydraError
    verdict: Verdict

    def admission(self, surface: Surface) -> Admission:
        return Admission(self.error, rate_headers=rate_headers(self.verdict, surface))


class _Blocked:
    """Client addresses refused for now, each until a time; the oldest forgotten past `size`."""

    def __init__(self, size: int = 100_000) -> None:
        self._until: OrderedDict[str, float] = OrderedDict()
        self._size = size

    def seconds_left(self, client: str, now: float) -> float:
        until = self._until.get(client)
        if until is None:
            return 0.0
        if until <= now:
            del self._until[client]
            return 0.0
        return until - now

    def block(self, client: str, until: float) -> None:
        self._until[client] = until
        self._until.move_to_end(client)
        while len(self._until) > self._size:
            self._until.popitem(last=False)


DEFAULT_INVALID_KEYS_PER_MINUTE = 60


class Authorizer:
    """Decides one request: identify the key, check scope and instance, then rate limit.

    Unknown or revoked keys count against the client's address: past `invalid_keys_per_minute`, its
    requests with keys not already cached are refused (429) without looking them up.
    """

    def __init__(
        self,
        *,
        store: KeyStore,
        limiter: Limiter,
        users: UserDirectory | None = None,
        members: Memberships | None = None,
        invalid_keys_per_minute: int = DEFAULT_INVALID_KEYS_PER_MINUTE,
    ) -> None:
        self._store = store
        self._limiter = limiter
        self._users = users
        self._members = members
        self._invalid_limit = invalid_keys_per_minute
        self._blocked = _Blocked()

    async def admit(
        self, route: RouteAccess, headers: Mapping[str, str], path: str, *, client: str = ""
    ) -> Admission:
        credential = route.credential
        if credential.verified_subject is not None:
            return await self._admit_user(route, headers, client)
        if credential.key_kind is None:
            raise ValueError(f"route takes no key: {credential.name!r}")
        secret = credential.secret(headers)
        if route.surface.takes(ID_TOKEN.auth) and (
            # An ID token the edge verified (and took off the request), or one it refused: not a key.
            headers.get(ID_TOKEN.verified_subject or "")
            or (secret is not None and keys.kind_of(secret) is None)
        ):
            return await self._admit_member(route, headers, client)
        if secret is None:
            return Admission(Unauthenticated(credential.missing))
        if keys.kind_of(secret) != credential.key_kind:
            return Admission(Unauthenticated(credential.wrong_kind))
        blocked = self._blocked.seconds_left(client, time.monotonic())
        record = await self._store.find(secret, load=not blocked)
        if record is None:
            return await self._invalid_key(client, blocked, route.surface)
        if route.scope and not has_scope(record.scopes, route.scope):
            return Admission(ForbiddenScope(route.scope, record.scopes))
        if credential.one_instance and not _instance_matches(record, path, route.instance_segment):
            return Admission(Unauthenticated("Widget token is not valid for this instance."))
        # In order, each counted only if the ones before allowed the request: a flood from one address
        # spends its own window, never the instance's or the key's that other visitors share.
        verdicts = []
        for prior in route.prior_limits:
            subject = client if prior.key == BY_CLIENT_IP else record.instance_id
            if not subject:
                continue
            verdict = await self._limiter.hit(
                f"{prior.key}:{prior.name}:{subject}", prior.requests_per_minute
            )
            if not verdict.allowed:
                return Admission(
                    RateLimited(RATE_LIMIT_EXCEEDED), rate_headers=rate_headers(verdict, route.surface)
                )
            verdicts.append(verdict)
        limit = route.requests_per_minute or record.rate_limit
        window = (
            f"key:{record.id}" if not route.requests_per_minute else f"key:{record.id}:{route.limit_name}"
        )
        verdict = await self._limiter.hit(window, limit)
        if not verdict.allowed:
            return Admission(
                RateLimited(f"Rate limit exceeded. Limit {limit} requests per minute per API key."),
                rate_headers=rate_headers(verdict, route.surface),
            )
        tightest = min([verdict, *verdicts], key=lambda v: v.remaining)
        self._store.touch(record)
        identity = {
            "x-hydra-tenant-id": str(record.tenant_id),
            "x-hydra-key-id": str(record.id),
            "x-hydra-scopes": " ".join(sorted(record.scopes)),
        }
        if record.instance_id is not None:
            identity["x-hydra-instance-id"] = str(record.instance_id)
        return Admission(identity=identity, rate_headers=rate_headers(tightest, route.surface))

    async def _admit_user(self, route: RouteAccess, headers: Mapping[str, str], client: str) -> Admission:
        """A request with an ID token the edge verified: its user, limited per minute and per hour by
        the user's plan. Without one (none sent, or refused by the edge: it says why), 401."""
        user = await self._verified_user(route, headers)
        if user is None:
            return await self._unverified(route, headers, client)
        verdict = await self._limit_user(user)
        if isinstance(verdict, _Refusal):
            return verdict.admission(route.surface)
        return Admission(identity={USER_HEADER: user.id}, rate_headers=rate_headers(verdict, route.surface))

    async def _admit_member(self, route: RouteAccess, headers: Mapping[str, str], client: str) -> Admission:
        """An ID token on a keyed route (HydraCore's user-scoped Bearer JWT): the tenant is the user's
        current membership, and the scopes are its role's."""
        user = await self._verified_user(route, headers)
        if user is None or self._members is None:
            return await self._unverified(route, headers, client)
        member = await self._members.current(uuid.UUID(user.id))
        if member is None:
            return Admission(Forbidden("Your account is not a member of any tenant."))
        if route.scope and not has_scope(member.scopes, route.scope):
            return Admission(ForbiddenScope(route.scope, member.scopes))
        verdict = await self._limit_user(user)
        if isinstance(verdict, _Refusal):
            return verdict.admission(route.surface)
        identity = {
            "x-hydra-tenant-id": str(member.tenant_id),
            "x-hydra-key-id": f"user:{user.id}",
            "x-hydra-scopes": " ".join(sorted(member.scopes)),
            USER_HEADER: user.id,
        }
        return Admission(identity=identity, rate_headers=rate_headers(verdict, route.surface))

    async def _verified_user(self, route: RouteAccess, headers: Mapping[str, str]) -> KnownUser | None:
        """The user of the ID token the edge verified, or None when it verified none."""
        subject = headers.get(ID_TOKEN.verified_subject or "", "")
        if not subject or self._users is None:
            return None
        return await self._users.resolve(subject, headers.get(ID_TOKEN.verified_email or "", ""))

    async def _unverified(self, route: RouteAccess, headers: Mapping[str, str], client: str) -> Admission:
        """401 for a missing token (counted per client address, as many a minute as invalid keys, in a
        window of its own), or for one the edge refused, saying why (counted like invalid keys: too many
        and the address is refused)."""
        if ID_TOKEN.secret(headers) is None:
            verdict = await self._limiter.hit(f"anonymous:{client}", self._invalid_limit)
            error: HydraError = (
                Unauthenticated(route.credential.missing)
                if verdict.allowed
                else RateLimited("Too many requests without a token from this address. Retry later.")
            )
            return Admission(error, rate_headers=rate_headers(verdict, route.surface))
        failure = headers.get(ID_TOKEN.verified_failure or "", "").strip()
        message = f"Invalid ID token: {failure if failure not in ('', '-') else 'not verified'}."
        blocked = self._blocked.seconds_left(client, time.monotonic())
        return await self._invalid_key(client, blocked, route.surface, message)

    async def _limit_user(self, user: KnownUser) -> Verdict | _Refusal:
        """The user's per-minute and per-hour windows by plan: the tighter verdict, or the refusal."""
        plan = plan_named(user.plan)
        verdicts = []
        for window, limit in ((60.0, plan.requests_per_minute), (3600.0, plan.requests_per_hour)):
            verdict = await self._limiter.hit(f"user:{user.id}:{int(window)}", limit, window)
            if not verdict.allowed:
                per = "minute" if window == 60.0 else "hour"
                return _Refusal(
                    RateLimited(
                        f"Rate limit exceeded: the {plan.name} plan allows {limit} requests per {per}."
                    ),
                    verdict,
                )
            verdicts.append(verdict)
        return min(verdicts, key=lambda v: v.remaining)

    async def _invalid_key(
        self, client: str, blocked: float, surface: Surface, message: str = "Invalid or revoked API key."
    ) -> Admission:
        """401 for an unknown or revoked key (or a bad token), until the client's address has sent too
        many: then 429. Either carries the address's window in the surface's rate-limit headers."""
        if blocked:
            verdict = Verdict(False, self._invalid_limit, 0, max(1, math.ceil(blocked)), blocked)
        else:
            verdict = await self._limiter.hit(f"invalid-key:{client}", self._invalid_limit)
            if verdict.allowed:
                return Admission(Unauthenticated(message), rate_headers=rate_headers(verdict, surface))
            self._blocked.block(client, time.monotonic() + verdict.retry_after)
        return Admission(
            RateLimited("Too many invalid API keys from this address. Retry later."),
            rate_headers=rate_headers(verdict, surface),
        )


def _instance_matches(record: KeyRecord, path: str, segment: int) -> bool:
    parts = path.split("?", 1)[0].strip("/").split("/")
    return (
        record.instance_id is not None
        and 0 <= segment < len(parts)
        and parts[segment] == str(record.instance_id)
    )
