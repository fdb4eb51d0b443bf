"""The platform as its own OpenID issuer, for the embedded default: RS256 signing keys kept in the data
directory, the JWKS that publishes them, and the ID tokens they sign.

With a real provider (Cognito, any OIDC issuer) none of this runs: Envoy verifies against its JWKS URI.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from services.common import config

ALGORITHM = "RS256"
_CURRENT = "current"  # names the kid that signs; every key in the folder is published
JWKS_PATH = "/.well-known/jwks.json"  # where the gatekeeper (and the edge) serve the embedded issuer's keys
KEYS_DIR = "id-token-keys"  # in the data directory


@dataclass(frozen=True)
class OidcSettings:
    """Who issues the ID tokens the edge accepts: a configured OpenID provider (HYDRA_OIDC_ISSUER,
    HYDRA_OIDC_AUDIENCE, HYDRA_OIDC_JWKS_URI), or the platform itself (no JWKS URI)."""

    issuer: str
    audience: str
    jwks_uri: str | None  # None: the embedded issuer, its JWKS served by the gatekeeper
    keys_dir: Path
    ca_file: str = config.SYSTEM_CA_FILE  # verifies an https JWKS URI's server

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        env = config.current_env() if env is None else env
        jwks_uri = env.get("HYDRA_OIDC_JWKS_URI") or None
        issuer = env.get("HYDRA_OIDC_ISSUER") or None
        if jwks_uri is not None:
            if issuer is None:
                raise config.ConfigError("HYDRA_OIDC_JWKS_URI needs HYDRA_OIDC_ISSUER (the tokens' iss)")
            parsed = urllib.parse.urlsplit(jwks_uri)
            if parsed.scheme not in ("http", "https") or not parsed.hostname:
                raise config.ConfigError("HYDRA_OIDC_JWKS_URI must be an http(s) URL")
        return cls(
            issuer=issuer or config.public_base_url(env),
            audience=env.get("HYDRA_OIDC_AUDIENCE") or "hydra",
            jwks_uri=jwks_uri,
            keys_dir=config.data_dir(env) / KEYS_DIR,
            ca_file=env.get("HYDRA_OIDC_CA_FILE") or cls.ca_file,
        )

    @property
    def embedded(self) -> bool:
        """Whether the platform issues the tokens itself."""
        return self.jwks_uri is None

    def issuer_here(self) -> Issuer:
        """The embedded issuer these settings describe."""
        return Issuer(self.keys_dir, issuer=self.issuer, audience=self.audience)


class Issuer:
    """Signs ID tokens with the current key; publishes every key it holds, so tokens signed before a
    rotation verify until their key is retired."""

    def __init__(self, keys: Path, *, issuer: str, audience: str) -> None:
        self._keys = keys
        self.issuer = issuer
        self.audience = audience

    def current_kid(self) -> str:
        """The kid that signs new tokens; the first key is made on first use."""
        current = self._keys / _CURRENT
        if not current.exists():
            return self.rotate()
        return current.read_text().strip()

    def rotate(self) -> str:
        """Makes a new signing key and signs with it from now on; returns its kid."""
        self._keys.mkdir(parents=True, exist_ok=True, mode=0o700)
        kid = secrets.token_hex(8)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        _write_private(self._keys / f"{kid}.pem", pem)
        _write_private(self._keys / _CURRENT, kid.encode())
        return kid

    def retire(self, kid: str) -> None:
        """Stops publishing a key that no longer signs: tokens it signed stop verifying."""
        if kid == self.current_kid():
            raise ValueError("the current signing key cannot be retired; rotate first")
        (self._keys / f"{kid}.pem").unlink(missing_ok=True)

    def jwks(self) -> dict[str, Any]:
        """The public keys, as a JWKS document."""
        self.current_kid()
        keys = []
        for path in sorted(self._keys.glob("*.pem")):
            public = _private_key(path).public_key()
            jwk: dict[str, Any] = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(public))
            keys.append({**jwk, "kid": path.stem, "use": "sig", "alg": ALGORITHM})
        return {"keys": keys}

    def mint(self, *, subject: str, email: str, ttl: dt.timedelta, now: dt.datetime | None = None) -> str:
        """An ID token for the user `subject`, valid for `ttl`."""
        issued = now or dt.datetime.now(dt.UTC)
        kid = self.current_kid()
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": subject,
            "email": email,
            "token_use": "id",
            "iat": int(issued.timestamp()),
            "exp": int((issued + ttl).timestamp()),
        }
        key = _private_key(self._keys / f"{kid}.pem")
        return jwt.encode(claims, key, algorithm=ALGORITHM, headers={"kid": kid})


def _private_key(path: Path) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"{path.name} is not an RSA key")
    return key


def _write_private(path: Path, data: bytes) -> None:
    """Writes a file only its owner may read, whole or not at all."""
    partial = path.with_suffix(path.suffix + ".partial")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)
    partial.replace(path)
