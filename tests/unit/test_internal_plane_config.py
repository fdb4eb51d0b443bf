"""Internal plane config: loopback by default, the internal token at the edge, the admin token."""

from __future__ import annotations

import dataclasses
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from edge.bindings import load_bindings
from edge.envoy_config import EdgeSettings, render
from services.common import config

UPSTREAMS = {name: ["127.0.0.1:1"] for name in config.DEFAULT_PORTS}


def manager(rendered: dict[str, Any]) -> dict[str, Any]:
    return rendered["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("127.0.0.1:50051", True),
        ("127.0.0.9:1", True),
        ("localhost:1", True),
        ("[::1]:1", True),
        ("0.0.0.0:50051", False),
        ("[::]:1", False),
        ("10.0.0.5:1", False),
        ("crm:50051", False),
    ],
)
def test_loopback_addresses(address: str, loopback: bool) -> None:
    assert config.is_loopback(address) is loopback


def test_defaults_listen_on_loopback_and_a_token_is_needed_elsewhere() -> None:
    assert config.service_address({}, "crm") == "127.0.0.1:50051"
    settings = EdgeSettings.from_env({"HYDRA_HOST": "0.0.0.0"})
    assert render(settings, load_bindings())["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"
    config.require_internal_token("127.0.0.1:1", None)
    config.require_internal_token("0.0.0.0:1", "s" * 16)
    with pytest.raises(config.ConfigError, match="HYDRA_INTERNAL_TOKEN"):
        config.require_internal_token("0.0.0.0:1", None)
    with pytest.raises(config.ConfigError, match="at least 16"):
        config.internal_token({"HYDRA_INTERNAL_TOKEN": "short"})


def test_envoy_overwrites_the_internal_token_upstream_or_drops_a_clients() -> None:
    token = "t" * 24
    settings = EdgeSettings.from_env({"HYDRA_INTERNAL_TOKEN": token})
    rendered = manager(render(settings, load_bindings()))
    assert rendered["route_config"]["request_headers_to_add"] == [
        {
            "header": {"key": "x-hydra-internal-token", "value": token},
            "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
        }
    ]
    (limits,) = [f for f in rendered["http_filters"] if f["name"] == "envoy.filters.http.ratelimit"]
    grpc_service = limits["typed_config"]["rate_limit_service"]["grpc_service"]
    assert grpc_service["initial_metadata"] == [{"key": "x-hydra-internal-token", "value": token}]

    open_settings = dataclasses.replace(settings, internal_token=None)
    route_config = manager(render(open_settings, load_bindings()))["route_config"]
    assert route_config["request_headers_to_remove"] == ["x-hydra-internal-token"]
    assert "request_headers_to_add" not in route_config


def test_the_admin_token_is_made_once_for_its_owner_only(tmp_path: Path) -> None:
    env = {"HYDRA_DATA_DIR": str(tmp_path)}
    assert config.admin_token(env, create=False) is None
    with ThreadPoolExecutor(8) as pool:
        tokens = set(pool.map(lambda _: config.admin_token(env, create=True), range(32)))
    assert len(tokens) == 1 and len(tokens.pop() or "") >= 32
    assert (os.stat(tmp_path / "admin-token").st_mode & 0o777) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["admin-token"]
    assert config.admin_token({**env, "HYDRA_ADMIN_TOKEN": "a" * 20}, create=True) == "a" * 20
