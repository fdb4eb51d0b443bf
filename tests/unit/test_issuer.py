"""The embedded ID-token issuer: tokens verify against its own JWKS, across a rotation, until retired."""

import datetime as dt
import json
import stat
from pathlib import Path

import jwt
import pytest

from edge.gatekeeper.issuer import Issuer

HOUR = dt.timedelta(hours=1)


def verify(token: str, issuer: Issuer) -> dict[str, object]:
    """Verifies as any OIDC client does: the key named by the token's kid, from the JWKS."""
    kid = jwt.get_unverified_header(token)["kid"]
    (jwk,) = [k for k in issuer.jwks()["keys"] if k["kid"] == kid]
    key = jwt.PyJWK(jwk).key
    return jwt.decode(token, key, algorithms=["RS256"], audience=issuer.audience, issuer=issuer.issuer)


def test_a_minted_token_verifies_against_the_published_keys(tmp_path: Path) -> None:
    issuer = Issuer(tmp_path / "keys", issuer="http://127.0.0.1:8080", audience="hydra")
    token = issuer.mint(subject="user-1", email="ada@example.com", ttl=HOUR)
    claims = verify(token, issuer)
    assert claims["sub"] == "user-1" and claims["email"] == "ada@example.com"
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    (key,) = issuer.jwks()["keys"]
    assert "d" not in key and key["kid"] == issuer.current_kid()  # public parts only
    for path in (tmp_path / "keys").iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_tokens_signed_before_a_rotation_verify_until_their_key_is_retired(tmp_path: Path) -> None:
    issuer = Issuer(tmp_path / "keys", issuer="http://127.0.0.1:8080", audience="hydra")
    old = issuer.mint(subject="user-1", email="ada@example.com", ttl=HOUR)
    old_kid = issuer.current_kid()
    new_kid = issuer.rotate()
    new = issuer.mint(subject="user-1", email="ada@example.com", ttl=HOUR)
    assert jwt.get_unverified_header(new)["kid"] == new_kid != old_kid
    assert verify(old, issuer)["sub"] == verify(new, issuer)["sub"] == "user-1"
    with pytest.raises(ValueError):
        issuer.retire(new_kid)
    issuer.retire(old_kid)
    assert [k["kid"] for k in issuer.jwks()["keys"]] == [new_kid]
    with pytest.raises(ValueError):
        verify(old, issuer)  # its key is no longer published


def test_expired_tampered_and_foreign_tokens_do_not_verify(tmp_path: Path) -> None:
    issuer = Issuer(tmp_path / "keys", issuer="http://127.0.0.1:8080", audience="hydra")
    past = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    with pytest.raises(jwt.ExpiredSignatureError):
        verify(issuer.mint(subject="u", email="a@example.com", ttl=HOUR, now=past), issuer)
    header, payload, signature = issuer.mint(subject="u", email="a@example.com", ttl=HOUR).split(".")
    claims = json.loads(jwt.utils.base64url_decode(payload))
    forged = jwt.utils.base64url_encode(json.dumps({**claims, "sub": "admin"}).encode()).decode()
    with pytest.raises(jwt.InvalidSignatureError):
        verify(f"{header}.{forged}.{signature}", issuer)
    other = Issuer(tmp_path / "other", issuer="http://127.0.0.1:8080", audience="hydra")
    foreign = other.mint(subject="u", email="a@example.com", ttl=HOUR)
    with pytest.raises(ValueError):
        verify(foreign, issuer)  # no published key has its kid
