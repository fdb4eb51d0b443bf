"""Hostile tenants and visitors of widget chat: outbound calls to model servers, floods, revocation."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator

import httpx
import pytest

from hydractl.cli import revoke_key
from tests.e2e.conftest import (
    OPERATOR_MODEL_HOST,
    OPERATOR_MODEL_KEY,
    TENANT_MODEL_HOST,
    Edge,
    core_key,
    create_instance,
)
from tests.e2e.test_core_routes import assert_detail
from tests.e2e.test_public_site import visitor
from tests.e2e.test_widget import Widget, chat, conversation, parse_events, widget
from tests.support.llm_server import FakeChatServer

REFUSED = "The agent backend's address is not allowed."
ENDED = "This chat is no longer available."


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


@contextlib.contextmanager
def open_stream(
    edge: Edge, w: Widget, client: httpx.Client | None = None
) -> Iterator[Iterator[tuple[str, dict]]]:
    """A chat whose stream is open (the conversation and first delta read); its remaining events."""
    with contextlib.ExitStack() as stack:
        client = client or stack.enter_context(visitor(edge))
        response = stack.enter_context(
            client.stream("POST", w.path, json={"message": "Hello"}, headers=w.headers, timeout=30)
        )
        assert response.status_code == 200, response.read()
        events = parse_events(response.iter_lines())
        assert next(events)[0] == "conversation"
        assert next(events) == ("delta", {"content": "First "})
        yield events


def held_server(release: threading.Event) -> FakeChatServer:
    """A model server that sends one piece, then holds the rest of each reply until released."""
    return FakeChatServer(
        pieces=["First ", "and last."], hold_after_first=release, hold_timeout=60, host=TENANT_MODEL_HOST
    )


def test_a_slow_model_server_holds_only_its_instances_share(edge: Edge) -> None:
    release = threading.Event()
    with held_server(release) as slow, FakeChatServer(host=TENANT_MODEL_HOST) as fast:
        slow_bot = widget(edge, model=openai_model(slow.base_url))
        with open_stream(edge, slow_bot) as first, open_stream(edge, slow_bot) as second:
            # Its two places (the test stack's cap) are taken: a third chat is refused before it starts.
            with visitor(edge) as client:
                refused = client.post(slow_bot.path, json={"message": "Hello"}, headers=slow_bot.headers)
            assert "Too many chats" in assert_detail(refused, 429)
            # Other tenants' chats go on.
            assert chat(edge, widget(edge, model=openai_model(fast.base_url)), "hi")[-1][0] == "done"
            assert chat(edge, widget(edge), "How long do refunds take?")[-1][0] == "done"
            release.set()
            for events in (first, second):
                assert [n for n, _ in events] == ["delta", "done"]
        # Places are given back when streams end.
        assert chat(edge, slow_bot, "again")[-1][0] == "done"
    assert len(slow.requests) == 3


def test_one_address_holds_only_its_own_streams(edge: Edge) -> None:
    release = threading.Event()
    with held_server(release) as slow:
        bots = [widget(edge, model=openai_model(slow.base_url)) for _ in range(2)]
        with visitor(edge) as client, contextlib.ExitStack() as streams:
            for bot in (bots[0], bots[0], bots[1]):  # the test stack's cap: three per address
                streams.enter_context(open_stream(edge, bot, client))
            refused = client.post(bots[1].path, json={"message": "Hello"}, headers=bots[1].headers)
            assert "from your address" in assert_detail(refused, 429)
            # Another address is not held back.
            with open_stream(edge, bots[1]):
                pass
            release.set()


def test_a_flood_from_one_address_leaves_other_visitors_chatting(edge: Edge) -> None:
    w = widget(edge)  # a token with the default limit, 60 a minute, shared by every visitor
    with visitor(edge) as flooder:
        # Cheap messages (refused as invalid by the service, after the edge counted them).
        statuses = [
            flooder.post(w.path, json={"message": ""}, headers=w.headers).status_code for _ in range(70)
        ]
        refused = flooder.post(w.path, json={"message": "hi"}, headers=w.headers)
    assert statuses == [422] * 30 + [429] * 40
    assert assert_detail(refused, 429) == "Rate limit exceeded"
    assert refused.headers["x-ratelimit-limit"] == "30" and int(refused.headers["retry-after"]) >= 1
    # The flood spent its own address's window, not the token's or the instance's.
    assert chat(edge, w, "How long do refunds take?")[-1][0] == "done"


@pytest.mark.parametrize("ending", ["token revoked", "instance deleted"])
def test_an_open_stream_ends_within_seconds_of_losing_its_access(edge: Edge, ending: str) -> None:
    release = threading.Event()
    with held_server(release) as slow:
        w = widget(edge, model=openai_model(slow.base_url))
        with open_stream(edge, w) as events:
            if ending == "token revoked":
                revoke_key(edge.env, w.token_id)
            else:
                deleted = edge.http.delete(f"/v1/instances/{w.instance['id']}", headers=w.core.api_key)
                assert deleted.status_code == 204
            # The model server is still holding its reply (for a minute): the stream ends anyway.
            assert list(events) == [("error", {"detail": ENDED})]
            assert not release.is_set() and slow.holds_timed_out == 0
