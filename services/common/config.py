"""Reading HYDRA_* environment variables once, at start-up, with clear errors."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import secrets
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self


class ConfigError(ValueError):
    """A HYDRA_* variable is invalid."""


def env_str(env: Mapping[str, str], name: str, default: str) -> str:
    """A string variable, or its default when unset or empty."""
    return env.get(name) or default


def env_int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    """An integer variable of at least `minimum`."""
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


_FLAGS = {
    "1": True,
    "true": True,
    "yes": True,
    "on": True,
    "0": False,
    "false": False,
    "no": False,
    "off": False,
}


def env_flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    """A yes/no variable (1/0, true/false, yes/no, on/off), or its default when unset or empty."""
    raw = env.get(name)
    if not raw:
        return default
    try:
        return _FLAGS[raw.strip().lower()]
    except KeyError:
        raise ConfigError(f"{name} must be 1/0, true/false, yes/no or on/off, got {raw!r}") from None


def env_choice(env: Mapping[str, str], name: str, choices: Sequence[str], default: str) -> str:
    """One of `choices`, or the default when unset or empty."""
    raw = env.get(name)
    if not raw:
        return default
    if raw not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw


def data_dir(env: Mapping[str, str]) -> Path:
    """Where embedded state lives (SQLite files, maildir): HYDRA_DATA_DIR or ./.hydra."""
    return Path(env.get("HYDRA_DATA_DIR") or ".hydra").resolve()


def public_base_url(env: Mapping[str, str]) -> str:
    """Where clients reach the platform (HYDRA_PUBLIC_BASE_URL), else the edge on this machine."""
    configured = env.get("HYDRA_PUBLIC_BASE_URL")
    if configured:
        return configured.rstrip("/")
    return f"http://127.0.0.1:{env_int(env, 'HYDRA_EDGE_PORT', 8080, minimum=1)}"


def host(env: Mapping[str, str]) -> str:
    """The interface every process listens on: loopback unless HYDRA_HOST says otherwise."""
    return env.get("HYDRA_HOST") or "127.0.0.1"


def is_loopback(address: str) -> bool:
    """Whether a host:port (or [v6]:port) listens on loopback only."""
    host = address.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it may resolve anywhere


INTERNAL_TOKEN_VAR = "HYDRA_INTERNAL_TOKEN"
_MIN_SECRET = 16


def _secret(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name) or None
    if value is not None and len(value) < _MIN_SECRET:
        raise ConfigError(f"{name} must be at least {_MIN_SECRET} characters")
    return value


def internal_token(env: Mapping[str, str] | None = None) -> str | None:
    """The secret Envoy and internal callers send with every internal gRPC call (HYDRA_INTERNAL_TOKEN)."""
    return _secret(current_env() if env is None else env, INTERNAL_TOKEN_VAR)


def require_internal_token(address: str, token: str | None) -> None:
    """Refuses a non-loopback listening address without an internal token: anyone who reached the
    port could otherwise act as any tenant."""
    if token is None and not is_loopback(address):
        raise ConfigError(
            f"{address} is not a loopback address: set {INTERNAL_TOKEN_VAR} (one secret shared by every "
            "process and Envoy) so only they can call the internal gRPC APIs"
        )


ADMIN_TOKEN_FILE = "admin-token"


def admin_token(env: Mapping[str, str], *, create: bool) -> str | None:
    """The key-admin API's token: HYDRA_ADMIN_TOKEN, else the one kept in the data dir.

    With `create`, a missing file is made (a random token, readable by its owner only), so a stack
    started with no configuration still guards the admin API and hydractl finds the token beside the
    data; whichever process comes first writes it, the others read the same one.
    """
    configured = _secret(env, "HYDRA_ADMIN_TOKEN")
    if configured is not None:
        return configured
    path = data_dir(env) / ADMIN_TOKEN_FILE
    if not path.exists() and create:
        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f".{ADMIN_TOKEN_FILE}.{secrets.token_hex(8)}")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(32))
        try:
            os.link(draft, path)  # atomic, and never replaces a token another process wrote first
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    try:
        return path.read_text().strip() or None
    except FileNotFoundError:
        return None


SYSTEM_CA_FILE = "/etc/ssl/certs/ca-certificates.crt"  # checks a TLS server's certificate by default


def current_env() -> Mapping[str, str]:
    """The process environment (the one place that reads it)."""
    return os.environ


def sqlite_default(env: Mapping[str, str], name: str) -> str:
    """The embedded database URL of a service: a SQLite file under the data dir."""
    directory = data_dir(env)
    directory.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{directory / f'{name}.sqlite3'}"


# Where each process listens by default (loopback); HYDRA_<NAME>_PORT overrides.
DEFAULT_PORTS = {
    "authz": 50049,
    "gatekeeper": 50050,
    "crm": 50051,
    "tickets": 50052,
    "instances": 50053,
    "public": 50054,
    "workflows": 50055,
    "mcp": 50056,  # the workflows service's MCP endpoints (HTTP)
    "tools": 50057,  # the gatekeeper's MCP servers of the Support and HydraCore APIs (HTTP)
}
# Each process's Prometheus metrics (HTTP), and its delivery process's: no upstreams of the edge.
METRICS_PORTS = {
    "gatekeeper_metrics": 9150,
    "crm_metrics": 9151,
    "tickets_metrics": 9152,
    "instances_metrics": 9153,
    "public_metrics": 9154,
    "workflows_metrics": 9155,
    "crm_delivery_metrics": 9161,
    "tickets_delivery_metrics": 9162,
    "instances_delivery_metrics": 9163,
    "public_delivery_metrics": 9164,
}


def metrics_ports(name: str) -> list[str]:
    """The names of process `name`'s metrics ports (its server's, and its delivery process's)."""
    return [p for p in (f"{name}_metrics", f"{name}_delivery_metrics") if p in METRICS_PORTS]


def service_port(env: Mapping[str, str], name: str) -> int:
    """The port process `name` listens on."""
    default = DEFAULT_PORTS[name] if name in DEFAULT_PORTS else METRICS_PORTS[name]
    return env_int(env, f"HYDRA_{name.upper()}_PORT", default, minimum=1)


def service_address(env: Mapping[str, str], name: str) -> str:
    """host:port where process `name` listens."""
    return f"{host(env)}:{service_port(env, name)}"


def peer_address(env: Mapping[str, str], name: str) -> str:
    """host:port where another process reaches process `name`: HYDRA_<NAME>_ADDR, else where it listens."""
    return env.get(f"HYDRA_{name.upper()}_ADDR") or service_address(env, name)


def database_url(env: Mapping[str, str], name: str) -> str:
    """Process `name`'s own database: HYDRA_<NAME>_DATABASE_URL, else a SQLite file under the data dir."""
    return env_str(env, f"HYDRA_{name.upper()}_DATABASE_URL", sqlite_default(env, name))


@dataclass(frozen=True, kw_only=True)
class ProcessSettings(ABC):
    """What every process reads the same way: where it listens, its own database, how much it logs."""

    address: str
    database_url: str
    log_level: str = "INFO"
    pool_size: int = 10  # connections to its own database
    cursor_key: bytes = b""  # signs its lists' cursors; b"": unsigned (settings built by hand in tests)
    sealing_key: bytes = b""  # seals the answers it keeps for Idempotency-Keys; b"": kept in clear

    @classmethod
    @abstractmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        """The process's settings from HYDRA_* variables (the process environment when `env` is None)."""

    @classmethod
    def common(cls, env: Mapping[str, str], name: str) -> dict[str, Any]:
        """The fields process `name` reads like every other, as keyword arguments for `cls`."""
        return {
            "address": service_address(env, name),
            "database_url": database_url(env, name),
            "log_level": env_str(env, "HYDRA_LOG_LEVEL", "INFO"),
            "cursor_key": cursor_key(env, name),
            "sealing_key": sealing_key(env, name),
        }


def cursor_key(env: Mapping[str, str], name: str) -> bytes:
    """The key process `name` signs its cursors with."""
    return derived_key(env, name, "cursors")


def sealing_key(env: Mapping[str, str], name: str) -> bytes:
    """The key process `name` seals what it keeps of its answers with (see idempotency)."""
    return derived_key(env, name, "answers")


def derived_key(env: Mapping[str, str], name: str, purpose: str) -> bytes:
    """A key of process `name` for `purpose`: every replica derives the same one from a secret they share
    (the internal token, else the admin token beside the data)."""
    secret = internal_token(env) or admin_token(env, create=True) or ""
    return hmac.new(secret.encode(), f"hydra {name} {purpose}".encode(), hashlib.sha256).digest()
