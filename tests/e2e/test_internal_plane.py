"""Through the real Envoy: a client can neither supply nor learn the internal token."""

from __future__ import annotations

from tests.e2e.conftest import Edge, Key
from tests.e2e.test_leads import LEADS


def test_a_clients_internal_token_is_overwritten_at_the_edge(edge: Edge, key: Key) -> None:
    # On the PostgreSQL stack the services require the token: the request works only because Envoy
    # replaced the forged one with its own. On the embedded stack Envoy removes it.
    forged = {**key.bearer, "x-hydra-internal-token": "forged-by-a-client-0123456789"}
    response = edge.http.post(LEADS, json={"name": "Forger"}, headers=forged)
    assert response.status_code == 201, response.text
    token = edge.env.get("HYDRA_INTERNAL_TOKEN")
    assert not token or token not in response.text + str(response.headers)
