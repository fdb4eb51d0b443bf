"""Through the real Envoy: what reaches a service is what Envoy vouches for (internal token, deadline)."""

from __future__ import annotations

import json

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


def test_the_service_gets_the_edges_deadline_never_a_clients(edge: Edge, key: Key) -> None:
    response = edge.http.post(
        LEADS, json={"name": "In time"}, headers={**key.bearer, "grpc-timeout": "99999S"}
    )
    assert response.status_code == 201
    log = edge.stack.log_dir / "crm.log"
    calls = [json.loads(line) for line in log.read_text().splitlines() if "CreateLead" in line]
    # The route's 15 s less a second of headroom, so the service answers before Envoy gives up.
    assert 13_000 < calls[-1]["deadline_ms"] <= 14_000
