"""The edge against hostile shapes and sizes: odd headers, huge bodies, slow clients, key floods."""

from __future__ import annotations

import json
import secrets
import socket
import time
from collections.abc import Callable, Iterator

import pytest

from edge.gatekeeper.authorizer import DEFAULT_INVALID_KEYS_PER_MINUTE
from hydractl.cli import mint
from tests.e2e.conftest import Edge, Key, core_key, create_channel, create_instance, create_site
from tests.e2e.test_core_routes import assert_detail
from tests.e2e.test_leads import assert_error
from tests.e2e.test_public_site import SUBMIT, TRACK, visitor

MB = 1_000_000
# Legal HTTP header names that are not legal gRPC metadata, and headers gRPC would read itself.
ODD_HEADERS = [
    {"x-trace~id": "1"},
    {"x-a*b": "1"},
    {"x-a!b": "1"},
    {"X-Mixed-Case": "1"},
    {"x-trace-bin": "!!! not base64"},
    {"grpc-timeout": "1n"},
    {"grpc-encoding": "gzip"},
    {"x-value": "caf\u00e9".encode()},  # UTF-8 bytes in a value
]


@pytest.fixture(scope="module")
def tenant(edge: Edge) -> dict:
    """One tenant with a key for each surface, an instance with a widget token, and a site."""
    support = edge.key(scopes=["crm:read", "tickets:read", "conversations:read"])
    core = core_key(edge, support.tenant)
    instance = create_instance(edge, core, knowledge=[{"title": "Refunds", "content": "Within 14 days."}])
    token = mint(edge.env, tenant=core.tenant, kind="widget", scopes=[], instance=instance["id"])["key"]
    return {
        "support": support,
        "core": core,
        "instance": instance,
        "token": token,
        "site": create_site(edge, core),
    }


# A sample of routes of every service: crm, tickets, instances, public, the gatekeeper (api-key-context).
ROUTES: dict[str, Callable[[dict], tuple[str, str, dict, dict | None, int]]] = {
    "crm leads": lambda t: ("GET", "/api/v1/leads", t["support"].bearer, None, 200),
    "crm conversations": lambda t: ("GET", "/api/v1/conversations", t["support"].bearer, None, 200),
    "tickets": lambda t: ("GET", "/api/v1/tickets", t["support"].bearer, None, 200),
    "instances": lambda t: ("GET", f"/v1/instances/{t['instance']['id']}", t["core"].api_key, None, 200),
    "channels": lambda t: (
        "GET",
        f"/v1/instances/{t['instance']['id']}/channels",
        t["core"].api_key,
        None,
        200,
    ),
    "sites": lambda t: ("GET", "/v1/sites", t["core"].api_key, None, 200),
    "analytics": lambda t: (
        "POST",
        TRACK,
        {},
        {"site_id": t["site"]["tracking_token"], "page_path": "/odd-headers"},
        204,
    ),
    "widget chat": lambda t: (
        "POST",
        f"/v1/public/widget/{t['instance']['id']}/chat",
        {"X-Widget-Token": t["token"]},
        {"message": "refunds?"},
        200,
    ),
    "key context": lambda t: ("GET", "/v1/mcp/api-key-context", t["core"].api_key, None, 200),
}


@pytest.mark.parametrize("route", list(ROUTES))
def test_headers_grpc_cannot_carry_never_fail_a_request(edge: Edge, tenant: dict, route: str) -> None:
    method, path, auth, body, status = ROUTES[route](tenant)
    for odd in ODD_HEADERS:
        response = edge.http.request(method, path, json=body, headers={**auth, **odd})
        assert response.status_code == status, (odd, response.status_code, response.text[:200])


def test_a_422_listing_hundreds_of_errors_arrives_whole_with_a_count_of_the_rest(edge: Edge) -> None:
    key = core_key(edge)
    instance = create_instance(edge, key)
    response = edge.http.patch(
        f"/v1/instances/{instance['id']}", json={"knowledge": [{}] * 499}, headers=key.api_key
    )
    detail = assert_detail(response, 422)
    assert isinstance(detail, list)
    *listed, rest = detail
    assert listed[0] == {"loc": ["body", "knowledge", 0, "title"], "msg": "Field required", "type": "missing"}
    assert rest["type"] == "too_many_errors"
    assert rest["msg"] == f"{2 * 499 - len(listed)} more errors not listed"


def test_a_400_listing_hundreds_of_errors_arrives_whole_on_the_support_api(edge: Edge, key: Key) -> None:
    response = edge.http.post(
        "/api/v1/leads", json={f"unknown_{n}": n for n in range(400)}, headers=key.bearer
    )
    body = assert_error(response, 400, "validation_error")
    assert "Extra inputs are not permitted" in body["error"] and body["error"].endswith("more errors")


def body_of(size: int) -> bytes:
    return json.dumps({"name": "x" * size}).encode()


def chunks(data: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    """The body sent chunked, with no Content-Length for the edge to check first."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.mark.parametrize("size", [3 * MB, 2 * MB, 1_100_000])
def test_a_body_over_the_limit_is_413_in_each_surfaces_envelope(edge: Edge, key: Key, size: int) -> None:
    json_header = {"content-type": "application/json"}
    big = body_of(size)
    for content in (big, chunks(big)):
        response = edge.http.post("/api/v1/leads", content=content, headers={**key.bearer, **json_header})
        assert_error(response, 413, "validation_error")
    core = core_key(edge)
    for content in (big, chunks(big)):
        response = edge.http.post("/v1/sites", content=content, headers={**core.api_key, **json_header})
        assert assert_detail(response, 413) == "Request body too large."
    with visitor(edge) as client:  # a public route: no key at all
        assert assert_detail(client.post(SUBMIT, content=big, headers=json_header), 413)


def test_an_instance_of_the_largest_valid_size_is_written_and_read(edge: Edge) -> None:
    key = core_key(edge)
    knowledge = [{"title": "t" * 200, "content": "<" * 20_000} for _ in range(500)]
    response = edge.http.post(
        "/v1/instances", json={"name": "Big", "knowledge": knowledge}, headers=key.api_key, timeout=60
    )
    assert response.status_code == 201, response.text[:300]
    got = edge.http.get(f"/v1/instances/{response.json()['id']}", headers=key.api_key, timeout=60)
    assert got.status_code == 200
    assert len(got.content) > 60 * MB  # every "<" printed as \u003c
    assert got.json()["knowledge"] == knowledge


def all_pages(edge: Edge, path: str, plural: str, headers: dict, **params: object) -> list[list[dict]]:
    """Every page of a list, following next_cursor."""
    pages: list[list[dict]] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = edge.http.get(path, params=query, headers=headers, timeout=60)
        assert response.status_code == 200, response.text[:300]
        body = response.json()
        assert body["count"] == len(body[plural])
        pages.append(body[plural])
        cursor = body.get("next_cursor")
        if cursor is None:
            return pages


def test_a_tenant_whose_instances_outgrow_one_answer_gets_pages_not_a_500(edge: Edge) -> None:
    key = core_key(edge)
    knowledge = [{"title": "t", "content": "<" * 20_000} for _ in range(60)]  # ~7 MB of JSON each
    created = [create_instance(edge, key, name=f"big {n}", knowledge=knowledge)["id"] for n in range(10)]
    pages = all_pages(edge, "/v1/instances", "instances", key.api_key)
    assert len(pages) > 1
    assert [i["id"] for page in pages for i in page] == created[::-1]  # newest first, each once


@pytest.mark.parametrize("kind", ["instances", "channels", "sites", "submissions"])
def test_every_core_list_pages_by_limit_and_cursor(edge: Edge, kind: str) -> None:
    key = core_key(edge)
    if kind == "instances":
        made = [create_instance(edge, key, name=f"i{n}")["id"] for n in range(5)][::-1]
        path = "/v1/instances"
    elif kind == "channels":
        instance = create_instance(edge, key)["id"]
        made = [create_channel(edge, key, instance, external_identifier=f"+1555{n}")["id"] for n in range(5)]
        path = f"/v1/instances/{instance}/channels"  # oldest first
    elif kind == "sites":
        made = [create_site(edge, key, name=f"s{n}")["id"] for n in range(5)][::-1]
        path = "/v1/sites"
    else:
        site = create_site(edge, key)
        with visitor(edge) as client:
            made = [
                client.post(SUBMIT, json={"site_id": site["id"], "form_data": {"n": n}}).json()[
                    "submission_id"
                ]
                for n in range(5)
            ][::-1]
        path = f"/v1/sites/{site['id']}/submissions"
    pages = all_pages(edge, path, kind, key.api_key, limit=2)
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [row["id"] for page in pages for row in page] == made
    everything = edge.http.get(path, headers=key.api_key).json()
    assert "next_cursor" not in everything and [r["id"] for r in everything[kind]] == made
    bad = edge.http.get(path, params={"cursor": "not-a-cursor"}, headers=key.api_key)
    assert assert_detail(bad, 422)[0]["loc"] == ["query", "cursor"]


def test_a_client_sending_its_headers_slowly_is_cut_off(edge: Edge) -> None:
    limit = int(edge.env["HYDRA_EDGE_REQUEST_HEADERS_TIMEOUT_SECONDS"])
    port = int(edge.env["HYDRA_EDGE_PORT"])
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(0.5)
        sock.sendall(b"GET /api/v1/leads HTTP/1.1\r\nhost: edge\r\n")
        answer = b""
        while time.monotonic() - started < limit + 20:
            try:
                sock.sendall(b"x-slow: 1\r\n")  # one more header every half second, never the blank line
                chunk = sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                break
            if not chunk:
                break
            answer += chunk
    assert time.monotonic() - started < limit + 20
    assert answer == b"" or answer.startswith(b"HTTP/1.1 408")


def test_a_flood_of_unknown_keys_from_one_address_is_429_while_others_keep_working(
    edge: Edge, key: Key
) -> None:
    core = core_key(edge)
    allowed = int(edge.env.get("HYDRA_INVALID_KEYS_PER_MINUTE") or DEFAULT_INVALID_KEYS_PER_MINUTE)
    with visitor(edge) as flooder:
        answers = [
            flooder.get(
                "/api/v1/leads", headers={"Authorization": f"Bearer hmcp_{secrets.token_urlsafe(24)}"}
            )
            for _ in range(allowed + 10)
        ]
        statuses = [a.status_code for a in answers]
        assert statuses == [401] * allowed + [429] * 10, statuses
        limited = answers[-1]
        assert_error(limited, 429, "rate_limited")
        assert int(limited.headers["retry-after"]) >= 1
        core_answer = flooder.get(
            "/v1/instances", headers={"X-Api-Key": f"hc_live_{secrets.token_urlsafe(24)}"}
        )
        assert isinstance(assert_detail(core_answer, 429), str)
        assert edge.http.get("/api/v1/leads", headers=key.bearer).status_code == 200  # another address
        assert edge.http.get("/v1/instances", headers=core.api_key).status_code == 200
