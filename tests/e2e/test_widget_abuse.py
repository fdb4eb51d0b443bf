"""Hostile tenants of widget chat: outbound calls to a tenant-chosen model server."""

from __future__ import annotations

import json

import httpx

from tests.e2e.conftest import (
    OPERATOR_MODEL_HOST,
    OPERATOR_MODEL_KEY,
    TENANT_MODEL_HOST,
    Edge,
    core_key,
    create_instance,
)
from tests.e2e.test_core_routes import assert_detail
from tests.e2e.test_widget import chat, conversation, widget
from tests.support.llm_server import FakeChatServer

REFUSED = "The agent backend's address is not allowed."


def openai_model(base_url: str | None) -> dict[str, object]:
    return {"backend": "openai_compatible", "model": "m", "base_url": base_url}


def internal_ports(edge: Edge) -> dict[str, str]:
    return {
        "envoy admin": edge.env["HYDRA_ENVOY_ADMIN_PORT"],
        "gatekeeper": edge.env["HYDRA_GATEKEEPER_PORT"],
        "gatekeeper checks": edge.env["HYDRA_AUTHZ_PORT"],
        "crm": edge.env["HYDRA_CRM_PORT"],
    }


def admin_requests(edge: Edge) -> int:
    """Requests Envoy's admin listener has received (this one included)."""
    port = edge.env["HYDRA_ENVOY_ADMIN_PORT"]
    stats = httpx.get(
        f"http://127.0.0.1:{port}/stats", params={"filter": r"^http\.admin\.downstream_rq_total$"}
    )
    (line,) = stats.text.strip().splitlines()
    return int(line.rpartition(":")[2])


def test_literal_internal_addresses_are_refused_when_written(edge: Edge) -> None:
    key = core_key(edge)
    instance = create_instance(edge, key)
    url = f"/v1/instances/{instance['id']}"
    ports = internal_ports(edge)
    for base_url in [
        *(f"http://127.0.0.1:{port}/v1" for port in ports.values()),
        f"http://2130706433:{ports['envoy admin']}/v1",  # 127.0.0.1 spelled as one number
        f"http://0x7f.1:{ports['gatekeeper']}/v1",
        f"http://[::ffff:127.0.0.1]:{ports['gatekeeper checks']}/v1",
        "http://[::1]:8000/v1",
        "http://169.254.169.254/latest",
        "http://10.0.0.8:8000/v1",
    ]:
        for response in (
            edge.http.post(
                "/v1/instances", json={"name": "x", "model": openai_model(base_url)}, headers=key.api_key
            ),
            edge.http.patch(url, json={"model": {"base_url": base_url}}, headers=key.api_key),
        ):
            (error,) = assert_detail(response, 422)
            assert error["loc"] == ["body", "model", "base_url"] and error["type"] == "value_error", base_url
    assert edge.http.get(url, headers=key.api_key).json() == instance
    assert edge.http.get("/v1/instances", headers=key.api_key).json()["count"] == 1
    # The host the operator opens is accepted, and so is any name (judged when it is resolved).
    for base_url in (f"http://{TENANT_MODEL_HOST}:8000/v1", "http://localhost:8000/v1"):
        assert (
            edge.http.patch(url, json={"model": {"base_url": base_url}}, headers=key.api_key).status_code
            == 200
        )


def test_internal_ports_never_receive_a_request_from_a_widget_turn(edge: Edge) -> None:
    """A name that resolves to loopback is refused after resolution, before any connection."""
    with FakeChatServer() as local:  # on 127.0.0.1, which the operator has not opened
        targets = {name: f"http://localhost:{port}/v1" for name, port in internal_ports(edge).items()}
        targets["a local server"] = local.base_url.replace("127.0.0.1", "localhost")
        for name, base_url in targets.items():
            w = widget(edge, model=openai_model(base_url))
            before = admin_requests(edge)
            events = chat(edge, w, "Hello?")
            assert admin_requests(edge) == before + 1, name  # only the stats read itself
            assert [n for n, _ in events] == ["conversation", "error"], name
            assert events[-1][1] == {"detail": REFUSED}
            assert conversation(edge, w, events[0][1]["conversation_id"])["status"] == "escalated"
        assert local.requests == []


def test_only_the_operators_own_server_receives_the_operators_key(edge: Edge) -> None:
    operator_url = edge.env["HYDRA_AGENT_BASE_URL"]
    port = int(operator_url.rsplit(":", 1)[1].split("/")[0])
    with (
        FakeChatServer(host=OPERATOR_MODEL_HOST, port=port) as operators,
        FakeChatServer(host=TENANT_MODEL_HOST) as tenants,
    ):
        # The instance leaves base_url null: the operator's default server, key included.
        assert chat(edge, widget(edge, model=openai_model(None)), "hi")[-1][0] == "done"
        # A tenant's own server: no key, whoever's token asks.
        assert chat(edge, widget(edge, model=openai_model(tenants.base_url)), "hi")[-1][0] == "done"
    assert [r.headers.get("authorization") for r in operators.requests] == [f"Bearer {OPERATOR_MODEL_KEY}"]
    (request,) = tenants.requests
    assert OPERATOR_MODEL_KEY not in json.dumps(request.headers)


def test_a_reply_past_a_cap_ends_the_turn_in_band(edge: Edge) -> None:
    line = "data: " + json.dumps({"choices": [{"delta": {"content": "x" * 100_000}}]}) + "\n\n"
    with FakeChatServer(events=[line], host=TENANT_MODEL_HOST) as server:
        w = widget(edge, model=openai_model(server.base_url))
        events = chat(edge, w, "Tell me everything.")
    assert [n for n, _ in events] == ["conversation", "error"]
    assert "could not be read" in events[-1][1]["detail"]
    assert conversation(edge, w, events[0][1]["conversation_id"])["status"] == "escalated"
