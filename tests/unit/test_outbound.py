"""Which addresses a tenant-chosen model server URL may reach, judged without DNS."""

from __future__ import annotations

import ipaddress

import pytest

from services.common.config import ConfigError
from services.common.outbound import HostPolicy, is_public, literal_address

REFUSED = [
    "127.0.0.1",
    "127.8.9.10",
    "10.1.2.3",
    "172.16.0.1",
    "172.31.255.254",
    "192.168.1.1",
    "169.254.169.254",  # cloud metadata
    "100.64.0.1",  # carrier-grade NAT
    "0.0.0.0",
    "0.1.2.3",
    "224.0.0.1",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    "192.0.2.1",
    "198.18.0.1",
    "::1",
    "::",
    "fe80::1",
    "fc00::1",
    "fd12:3456::1",
    "ff02::1",
    "::ffff:127.0.0.1",  # IPv4-mapped
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "::127.0.0.1",  # IPv4-compatible
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    "2002:a00:1::1",  # 6to4 of 10.0.0.1
    "2001::1",  # Teredo
    "2001:db8::1",  # documentation
]
PUBLIC = ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"]


@pytest.mark.parametrize("address", REFUSED)
def test_special_purpose_addresses_are_not_public(address: str) -> None:
    assert not is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", PUBLIC)
def test_global_unicast_addresses_are_public(address: str) -> None:
    assert is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "2130706433",
        "0x7f000001",
        "017700000001",
        "127.1",
        "0x7f.1",
        "0177.0.0.1",
        "127.0.0.1.",
        "[::1]",
    ],
)
def test_every_spelling_of_a_loopback_address_is_read_as_one(host: str) -> None:
    address = literal_address(host)
    assert address is not None and address.is_loopback


@pytest.mark.parametrize("host", ["example.com", "models.internal", "cafe", "1.2.3.4.5", "0x7f.example"])
def test_names_are_not_addresses(host: str) -> None:
    assert literal_address(host) is None


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9901/v1",
        "http://2130706433:9901/v1",
        "http://0x7f.1:50050/v1",
        "https://[::1]:8443/v1",
        "http://[::ffff:7f00:1]/v1",
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.5:8000/v1",
        "http://0.0.0.0:8080/v1",
    ],
)
def test_urls_of_literal_special_addresses_are_refused(url: str) -> None:
    refusal = HostPolicy().refusal(url)
    assert refusal is not None and "127.0.0.1" not in refusal


def test_names_and_public_addresses_wait_for_resolution() -> None:
    policy = HostPolicy()
    for url in ("http://localhost:8000/v1", "https://api.example.com/v1", "http://8.8.8.8/v1", "not a url"):
        assert policy.refusal(url) is None


def test_the_operator_opens_hosts_by_name_address_and_port() -> None:
    policy = HostPolicy.from_entries(
        [" Models.Internal ", "10.0.0.5:8000", "[fd00::5]:9000", "127.0.0.2", ""]
    )
    assert policy.trusts("models.internal.", 1234)
    assert policy.trusts("10.0.0.5", 8000) and not policy.trusts("10.0.0.5", 8001)
    assert policy.trusts("fd00::5", 9000) and not policy.trusts("fd00::5", 22)
    assert policy.refusal("http://10.0.0.5:8000/v1") is None
    assert policy.refusal("http://10.0.0.5:8001/v1") is not None
    assert policy.refusal("http://127.0.0.2:1/v1") is None
    assert policy.refusal("http://127.0.0.1:1/v1") is not None
    for bad in ("http://x/y", "host:port", "[fd00::1]:0", "a b"):
        with pytest.raises(ValueError):
            HostPolicy.from_entries([bad])


def test_the_operators_default_server_is_trusted_on_its_own_port() -> None:
    policy = HostPolicy.from_env(
        {"HYDRA_AGENT_BASE_URL": "http://127.0.0.1:8000/v1", "HYDRA_AGENT_ALLOWED_HOSTS": "gpu-box"}
    )
    assert policy.refusal("http://127.0.0.1:8000/other") is None
    assert policy.refusal("http://127.0.0.1:9901/v1") is not None
    assert policy.trusts("gpu-box", 80)
    with pytest.raises(ConfigError, match="HYDRA_AGENT_ALLOWED_HOSTS"):
        HostPolicy.from_env({"HYDRA_AGENT_ALLOWED_HOSTS": "http://gpu-box/v1"})
    with pytest.raises(ConfigError, match="HYDRA_AGENT_BASE_URL"):
        HostPolicy.from_env({"HYDRA_AGENT_BASE_URL": "gpu-box:8000"})
