"""Cursor paging and sync on every list, through the edge: a walk sees each row that existed when it
began, once, while rows are inserted and deleted; cursors are opaque and signed; updated_since and
created_since bound a list. On both surfaces and both backends."""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid

import pytest

from services.crm import models as crm_models
from tests.e2e.conftest import Edge, Key, core_key, create_instance, create_resource
from tests.e2e.test_core_routes import assert_detail
from tests.e2e.test_edge_limits import all_pages
from tests.e2e.test_leads import assert_error
from tests.support.database import insert_rows

SUPPORT_LISTS = {
    "/api/v1/leads": "leads",
    "/api/v1/accounts": "accounts",
    "/api/v1/contacts": "contacts",
    "/api/v1/tickets": "tickets",
    "/api/v1/conversations": "conversations",
}
SCOPES = [
    "crm:read",
    "crm:write",
    "tickets:read",
    "tickets:write",
    "conversations:read",
    "conversations:write",
]
# Rows walked on each backend: PostgreSQL as many as the issue asks for; SQLite (the embedded default)
# fewer, to keep the suite's time.
WALKED = {"postgres_redis": 100_000, "embedded": 20_000}


@pytest.mark.parametrize("path", SUPPORT_LISTS)
def test_every_support_list_pages_by_cursor_newest_first(edge: Edge, path: str) -> None:
    key = edge.key(scopes=SCOPES)
    plural = SUPPORT_LISTS[path]
    made = [create_resource(edge, key, path)["id"] for _ in range(5)][::-1]
    pages = all_pages(edge, path, plural, key.bearer, limit=2)
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [row["id"] for page in pages for row in page] == made
    whole = edge.http.get(path, headers=key.bearer).json()
    assert "next_cursor" not in whole and whole["count"] == 5  # the seed's shape on a last page


@pytest.mark.parametrize("path", ["/api/v1/leads", "/api/v1/tickets"])
def test_a_cursor_is_opaque_and_signed(edge: Edge, path: str) -> None:
    key = edge.key(scopes=SCOPES)
    for _ in range(3):
        create_resource(edge, key, path)
    cursor = edge.http.get(path, params={"limit": 1}, headers=key.bearer).json()["next_cursor"]
    assert ":" not in cursor and str(dt.datetime.now(dt.UTC).year) not in cursor  # no readable time
    forged = cursor[:-2] + ("AA" if cursor[-2:] != "AA" else "BB")
    for bad in (forged, "not-a-cursor", cursor + "x"):
        body = assert_error(
            edge.http.get(path, params={"cursor": bad}, headers=key.bearer), 400, "validation_error"
        )
        assert "cursor" in str(body)
    other_service = "/api/v1/tickets" if path == "/api/v1/leads" else "/api/v1/leads"
    assert_error(
        edge.http.get(other_service, params={"cursor": cursor}, headers=key.bearer), 400, "validation_error"
    )


def test_a_walk_of_many_rows_sees_each_once_while_rows_are_inserted_and_deleted(edge: Edge) -> None:
    key = edge.key(scopes=["crm:read", "crm:write"])
    total = WALKED[edge.backend]
    start = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    # Rows share their created_at a hundred at a time: the order between them is the id's.
    rows = [
        {
            "id": uuid.uuid4(),
            "tenant_id": uuid.UUID(key.tenant),
            "name": f"walked {n}",
            "source": "import",
            "created_at": start + dt.timedelta(seconds=n // 100),
            "updated_at": start + dt.timedelta(seconds=n // 100),
        }
        for n in range(total)
    ]
    insert_rows(edge.env, "crm", crm_models.leads, rows)
    existing = {str(r["id"]) for r in rows}
    doomed = [str(r["id"]) for r in rows[:: max(total // 200, 1)]]  # spread over the whole walk
    inserted: list[str] = []
    deleted: list[str] = []
    walking = threading.Event()
    walking.set()

    def churn() -> None:
        for n, victim in enumerate(doomed):
            if not walking.is_set():
                return
            created = edge.http.post("/api/v1/leads", json={"name": f"new {n}"}, headers=key.bearer)
            inserted.append(created.json()["lead"]["id"])
            if edge.http.delete(f"/api/v1/leads/{victim}", headers=key.bearer).status_code == 204:
                deleted.append(victim)
            time.sleep(0.01)

    writer = threading.Thread(target=churn)
    writer.start()
    try:
        seen = [
            row["id"]
            for page in all_pages(edge, "/api/v1/leads", "leads", key.bearer, limit=100)
            for row in page
        ]
    finally:
        walking.clear()
        writer.join()
    assert len(seen) == len(set(seen)), "a row was seen twice"
    assert deleted, "nothing was deleted during the walk"
    missing = existing - set(deleted) - set(seen)
    assert not missing, f"{len(missing)} rows the walk never saw"
    assert set(seen) <= existing | set(inserted)


def test_updated_since_and_created_since_bound_a_list(edge: Edge) -> None:
    key = edge.key(scopes=SCOPES)
    old = [create_resource(edge, key, "/api/v1/leads")["id"] for _ in range(3)]
    time.sleep(0.01)
    boundary = dt.datetime.now(dt.UTC)
    time.sleep(0.01)
    changed = edge.http.patch(f"/api/v1/leads/{old[1]}", json={"name": "Changed"}, headers=key.bearer)
    assert changed.status_code == 200
    new = create_resource(edge, key, "/api/v1/leads")["id"]

    def listed(**params: str) -> list[str]:
        response = edge.http.get("/api/v1/leads", params=params, headers=key.bearer)
        assert response.status_code == 200, response.text
        return [row["id"] for row in response.json()["leads"]]

    stamp = boundary.isoformat()
    assert listed(updated_since=stamp) == [new, old[1]]
    assert listed(created_since=stamp) == [new]
    # The same moment in another offset, and in Z form.
    assert listed(updated_since=boundary.astimezone(dt.timezone(dt.timedelta(hours=5))).isoformat()) == [
        new,
        old[1],
    ]
    assert listed(created_since=boundary.strftime("%Y-%m-%dT%H:%M:%S.%fZ")) == [new]
    assert listed(updated_since=stamp, created_since=stamp) == [new]
    assert len(listed(updated_since="2000-01-01")) == 4  # a date alone, UTC midnight

    body = assert_error(
        edge.http.get("/api/v1/leads", params={"updated_since": "yesterday"}, headers=key.bearer),
        400,
        "validation_error",
    )
    assert "updated_since" in str(body)


def test_hydracore_lists_take_the_same_bounds_in_fastapis_shape(edge: Edge) -> None:
    key = core_key(edge)
    first = create_instance(edge, key, name="first")["id"]
    time.sleep(0.01)
    boundary = dt.datetime.now(dt.UTC).isoformat()
    second = create_instance(edge, key, name="second")["id"]
    since = edge.http.get("/v1/instances", params={"created_since": boundary}, headers=key.api_key)
    assert [i["id"] for i in since.json()["instances"]] == [second]
    assert first != second
    bad = edge.http.get("/v1/instances", params={"updated_since": "soon"}, headers=key.api_key)
    assert assert_detail(bad, 422)[0]["loc"] == ["query", "updated_since"]


def test_a_support_key_cannot_page_into_another_tenants_rows(edge: Edge) -> None:
    mine: Key = edge.key(scopes=SCOPES)
    theirs: Key = edge.key(scopes=SCOPES)
    for _ in range(3):
        create_resource(edge, mine, "/api/v1/leads")
        create_resource(edge, theirs, "/api/v1/leads")
    cursor = edge.http.get("/api/v1/leads", params={"limit": 1}, headers=mine.bearer).json()["next_cursor"]
    page = edge.http.get("/api/v1/leads", params={"cursor": cursor}, headers=theirs.bearer).json()["leads"]
    assert {row["tenant_id"] for row in page} <= {theirs.tenant}
