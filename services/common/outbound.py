"""Which hosts a tenant-chosen URL may reach (public addresses, plus the hosts the operator names), and
the network backend that connects only to addresses it checked."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import ipaddress
import re
import socket
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import httpcore
import httpx

from services.common.config import ConfigError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
SocketOption = tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]

DEFAULT_PORTS = {"http": 80, "https": 443}
# What the C resolver reads as an IPv4 address besides the dotted quad: 127.1, 0x7f.0.0.1, 017700000001,
# 2130706433. A URL host made only of these characters is tried as one before it counts as a name.
_NUMERIC_HOST = re.compile(r"[0-9][0-9a-fA-FxX.]*")
# NAT64's well-known prefix: a NAT64 gateway turns such an address into a connection to the IPv4
# address in its low 32 bits (DNS64 answers public names with them on IPv6-only networks).
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def is_public(address: IPAddress) -> bool:
    """Whether `address` is a globally routed unicast address, also for IPv4 carried inside IPv6."""
    if isinstance(address, ipaddress.IPv6Address):
        # These reach the IPv4 address they carry, and are judged as that address.
        if address.ipv4_mapped is not None:
            return is_public(address.ipv4_mapped)
        if address in _NAT64:
            return is_public(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        # 6to4 relays reach the IPv4 site the address names: that must be public too.
        if address.sixtofour is not None and not is_public(address.sixtofour):
            return False
    # is_global leaves out private, loopback, link-local, shared (100.64/10), documentation and
    # reserved ranges (the IPv4-compatible ::/96 among them), but lets multicast through.
    return address.is_global and not (
        address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or address.is_loopback
        or address.is_link_local
        or address.is_private
    )


def literal_address(host: str) -> IPAddress | None:
    """The address a URL host spells, in any form the resolver accepts; None when the host is a name."""
    host = host.strip().removeprefix("[").removesuffix("]").rstrip(".")
    try:
        return ipaddress.ip_address(host.partition("%")[0])  # a zone id (fe80::1%eth0) names no other address
    except ValueError:
        pass
    if _NUMERIC_HOST.fullmatch(host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def normal_host(host: str) -> str:
    """A host as allow-list entries and URLs are compared: lower case, no brackets, no trailing dot."""
    return host.strip().lower().removeprefix("[").removesuffix("]").rstrip(".")


@dataclass(frozen=True)
class HostPolicy:
    """Hosts the operator trusts (at any address, loopback and private too); other hosts must be public.

    An entry is a host name or address, optionally with a port (`models.internal:8000`, `[fd00::5]:8000`);
    without a port it opens every port of that host.
    """

    hosts: frozenset[str] = frozenset()
    host_ports: frozenset[tuple[str, int]] = frozenset()

    @classmethod
    def from_entries(cls, entries: Iterable[str]) -> HostPolicy:
        """Raises ValueError naming an entry that is not a host or host:port."""
        hosts, host_ports = set(), set()
        for entry in (e.strip() for e in entries):
            if not entry:
                continue
            host, port = _split_entry(entry)
            if not host or any(c in host for c in "/@?# "):
                raise ValueError(f"not a host or host:port: {entry!r}")
            if port is None:
                hosts.add(normal_host(host))
            else:
                host_ports.add((normal_host(host), port))
        return cls(frozenset(hosts), frozenset(host_ports))

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> HostPolicy:
        """HYDRA_AGENT_ALLOWED_HOSTS (comma-separated), plus the host of HYDRA_AGENT_BASE_URL."""
        default = env.get("HYDRA_AGENT_BASE_URL")
        if default and url_origin(default) is None:
            raise ConfigError(f"HYDRA_AGENT_BASE_URL must be an http(s) URL with a host, got {default!r}")
        return cls.named_in(env, "HYDRA_AGENT_ALLOWED_HOSTS").with_origin_of(default)

    @classmethod
    def named_in(cls, env: Mapping[str, str], name: str) -> HostPolicy:
        """The hosts the setting `name` lists (comma-separated)."""
        try:
            return cls.from_entries((env.get(name) or "").split(","))
        except ValueError as error:
            raise ConfigError(f"{name}: {error}") from None

    def with_origin_of(self, url: str | None) -> HostPolicy:
        """This policy, also trusting the host and port of `url` (the operator's own default server)."""
        origin = url_origin(url) if url else None
        if origin is None:
            return self
        return HostPolicy(self.hosts, self.host_ports | {origin})

    def trusts(self, host: str, port: int) -> bool:
        """Whether the operator opened this host (on this port)."""
        host = normal_host(host)
        return host in self.hosts or (host, port) in self.host_ports

    def refusal(self, url: str) -> str | None:
        """Why `url` is refused when its host is a literal address tenants may not reach; else None.

        A host name is judged each time it is resolved, before the connection is made.
        """
        origin = url_origin(url)
        if origin is None or self.trusts(*origin):
            return None
        address = literal_address(origin[0])
        if address is not None and not is_public(address):
            return (
                "Input should be a URL of a public host; loopback, private, link-local and other "
                "special-purpose addresses are refused unless the operator allows the host"
            )
        return None


def url_origin(url: str) -> tuple[str, int] | None:
    """(normalised host, port) of an http(s) URL, or None when it has no usable host or port."""
    try:
        parts = urllib.parse.urlsplit(url.strip())
        port = parts.port or DEFAULT_PORTS.get(parts.scheme.lower())
    except ValueError:
        return None
    if parts.scheme.lower() not in DEFAULT_PORTS or not parts.hostname or port is None:
        return None
    return normal_host(parts.hostname), port


def core_url(url: str) -> httpcore.URL | None:
    """An http(s) URL as httpcore sends it (an internationalised host in its ASCII form), or None when no
    request could reach it."""
    try:
        parsed = httpx.URL(url.strip())
        port = parsed.port
    except (httpx.InvalidURL, ValueError):
        return None
    if parsed.scheme not in ("http", "https") or not parsed.host or not 0 < (port or 80) <= 65535:
        return None
    return httpcore.URL(scheme=parsed.raw_scheme, host=parsed.raw_host, port=port, target=parsed.raw_path)


def _split_entry(entry: str) -> tuple[str, int | None]:
    """host or host:port; an IPv6 address takes brackets when it has a port."""
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        return host, _port(entry, rest.removeprefix(":")) if rest else None
    if entry.count(":") == 1:
        host, _, port = entry.partition(":")
        return host, _port(entry, port)
    return entry, None


def _port(entry: str, text: str) -> int:
    if not text.isdigit() or not 0 < int(text) <= 65535:
        raise ValueError(f"bad port in {entry!r}")
    return int(text)


class AddressRefused(Exception):
    """A tenant-chosen host is, or resolves to, an address a tenant may not reach."""


class PinnedNetwork(httpcore.AsyncNetworkBackend):
    """Resolves a tenant-chosen host once, checks every address, and connects to an address it checked.

    The connection is made to the resolved address itself, so nothing resolves the name again between
    the check and the connect (DNS rebinding); TLS still verifies the certificate for the name, which
    the connection pool hands to start_tls, and the Host header keeps the name too.
    """

    def __init__(
        self, hosts: HostPolicy, inner: httpcore.AsyncNetworkBackend | None = None, *, resolvers: int = 0
    ) -> None:
        self._hosts = hosts
        self._inner = inner or httpcore.AnyIOBackend()
        # Threads of its own for name lookups (else the loop's small default pool): a host whose lookups
        # hang holds its threads past its attempt's deadline, and must not hold up every other host's.
        self._resolvers = (
            concurrent.futures.ThreadPoolExecutor(resolvers, thread_name_prefix="resolve")
            if resolvers
            else None
        )

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await self._resolve(host, port, timeout)
        if not self._hosts.trusts(host, port) and not all(is_public(a) for a in addresses):
            raise AddressRefused()
        failure: Exception = httpcore.ConnectError("no address")
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    str(address),
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as error:
                failure = error
        raise failure

    async def _resolve(self, host: str, port: int, seconds: float | None) -> list[IPAddress]:
        try:
            async with asyncio.timeout(seconds):
                found = await asyncio.get_running_loop().run_in_executor(
                    self._resolvers,
                    functools.partial(
                        socket.getaddrinfo, host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
                    ),
                )
        except TimeoutError:
            raise httpcore.ConnectTimeout("name resolution timed out") from None
        except (OSError, UnicodeError):
            raise httpcore.ConnectError("name resolution failed") from None
        addresses: list[IPAddress] = []
        for _family, _type, _proto, _name, sockaddr in found:
            # A scope id (fe80::1%eth0) is dropped: link-local addresses are refused unless trusted anyway.
            address = ipaddress.ip_address(str(sockaddr[0]).partition("%")[0])
            if address not in addresses:
                addresses.append(address)
        if not addresses:
            raise httpcore.ConnectError("name resolution found no address")
        return addresses

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise AddressRefused()

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)

    def close(self) -> None:
        """Lets its lookup threads end (a lookup still hanging ends on its own)."""
        if self._resolvers is not None:
            self._resolvers.shutdown(wait=False, cancel_futures=True)
