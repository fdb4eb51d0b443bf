"""Reading HYDRA_* environment variables once, at start-up, with clear errors."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path


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


def host(env: Mapping[str, str]) -> str:
    """The interface every process listens on: loopback unless HYDRA_HOST says otherwise."""
    return env.get("HYDRA_HOST") or "127.0.0.1"


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
}


def service_port(env: Mapping[str, str], name: str) -> int:
    """The port process `name` listens on."""
    return env_int(env, f"HYDRA_{name.upper()}_PORT", DEFAULT_PORTS[name], minimum=1)


def service_address(env: Mapping[str, str], name: str) -> str:
    """host:port where process `name` listens."""
    return f"{host(env)}:{service_port(env, name)}"
