"""Accounts and contacts of seed 000: validation, filters, lifecycle, fk_blocked, contacts' accounts."""

from __future__ import annotations

import uuid

import pytest

from tests.e2e.conftest import Edge, Key, create_resource
from tests.e2e.test_leads import assert_error

ACCOUNTS, CONTACTS = "/api/v1/accounts", "/api/v1/contacts"


def test_account_create_with_every_field_and_defaults(edge: Edge, key: Key) -> None:
    full = {
        "name": "Acme",
        "domain": "acme.test",
        "industry": "Tools",
        "website": "https://acme.test",
        "phone": "+1 555",
        "address": "1 Road",
        "notes": "VIP",
        "lifecycle_stage": "active",
        "health_score": 87,
        "renewal_date": "2027-01-31",
        "renewal_status": "upcoming",
        "mrr_cents": 1250000,
    }
    response = edge.http.post(ACCOUNTS, json=full, headers=key.bearer)
    assert response.status_code == 201
    account = response.json()["account"]
    assert {k: account[k] for k in full} == full
    minimal = edge.http.post(ACCOUNTS, json={"name": "Tiny"}, headers=key.bearer).json()["account"]
    assert minimal["lifecycle_stage"] == "prospect"
    assert (minimal["health_score"], minimal["renewal_date"], minimal["mrr_cents"]) == (None, None, None)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "name"),
        ({"name": "A", "lifecycle_stage": "gone"}, "lifecycle_stage"),
        ({"name": "A", "lifecycle_stage": None}, "lifecycle_stage"),
        ({"name": "A", "renewal_status": "maybe"}, "renewal_status"),
        ({"name": "A", "health_score": 101}, "health_score"),
        ({"name": "A", "health_score": -1}, "health_score"),
        ({"name": "A", "health_score": 5.5}, "health_score"),
        ({"name": "A", "renewal_date": "31/01/2027"}, "renewal_date"),
        ({"name": "A", "renewal_date": "2027-02-30"}, "renewal_date"),
        ({"name": "A", "mrr_cents": "100"}, "mrr_cents"),
        ({"name": "A", "mrr_cents": 1.5}, "mrr_cents"),
    ],
)
def test_account_validation(edge: Edge, key: Key, body: dict, field: str) -> None:
    error = assert_error(edge.http.post(ACCOUNTS, json=body, headers=key.bearer), 400, "validation_error")
    assert field in error["error"]
    assert edge.http.get(ACCOUNTS, headers=key.bearer).json()["count"] == 0


def test_lifecycle_stage_filter(edge: Edge, key: Key) -> None:
    for stage in ("active", "active", "churned"):
        edge.http.post(ACCOUNTS, json={"name": stage, "lifecycle_stage": stage}, headers=key.bearer)
    active = edge.http.get(ACCOUNTS, params={"lifecycle_stage": "active"}, headers=key.bearer).json()
    assert active["count"] == 2 and {a["lifecycle_stage"] for a in active["accounts"]} == {"active"}
    assert_error(
        edge.http.get(ACCOUNTS, params={"lifecycle_stage": "nope"}, headers=key.bearer),
        400,
        "validation_error",
    )


def test_patch_clears_nullable_fields_but_not_name(edge: Edge, key: Key) -> None:
    account = edge.http.post(ACCOUNTS, json={"name": "A", "health_score": 50}, headers=key.bearer).json()[
        "account"
    ]
    url = f"{ACCOUNTS}/{account['id']}"
    patched = edge.http.patch(
        url, json={"health_score": None, "lifecycle_stage": "at_risk"}, headers=key.bearer
    )
    assert patched.json()["account"]["health_score"] is None
    assert patched.json()["account"]["lifecycle_stage"] == "at_risk"
    assert_error(edge.http.patch(url, json={"name": None}, headers=key.bearer), 400, "validation_error")


def test_account_with_contacts_cannot_be_deleted(edge: Edge, key: Key) -> None:
    account = create_resource(edge, key, ACCOUNTS)
    for i in range(2):
        edge.http.post(
            CONTACTS, json={"email": f"p{i}@example.com", "account_id": account["id"]}, headers=key.bearer
        )
    response = edge.http.delete(f"{ACCOUNTS}/{account['id']}", headers=key.bearer)
    body = assert_error(response, 409, "fk_blocked")
    assert body["blockers"] == {"contacts": 2}
    contacts = edge.http.get(CONTACTS, params={"account_id": account["id"]}, headers=key.bearer).json()[
        "contacts"
    ]
    for contact in contacts:
        assert edge.http.delete(f"{CONTACTS}/{contact['id']}", headers=key.bearer).status_code == 204
    assert edge.http.delete(f"{ACCOUNTS}/{account['id']}", headers=key.bearer).status_code == 204


def test_contact_needs_an_account_of_the_same_tenant(edge: Edge, key: Key) -> None:
    assert_error(
        edge.http.post(CONTACTS, json={"email": "a@example.com"}, headers=key.bearer), 400, "validation_error"
    )
    theirs = create_resource(edge, edge.key(), ACCOUNTS)
    error = assert_error(
        edge.http.post(
            CONTACTS, json={"email": "a@example.com", "account_id": theirs["id"]}, headers=key.bearer
        ),
        400,
        "validation_error",
    )
    assert "account_id" in error["error"]
    assert_error(
        edge.http.post(
            CONTACTS, json={"email": "a@example.com", "account_id": str(uuid.uuid4())}, headers=key.bearer
        ),
        400,
        "validation_error",
    )
    assert_error(
        edge.http.post(CONTACTS, json={"email": "a@example.com", "account_id": "nope"}, headers=key.bearer),
        400,
        "validation_error",
    )
    assert edge.http.get(CONTACTS, headers=key.bearer).json()["count"] == 0


def test_contact_account_can_move_but_never_to_null(edge: Edge, key: Key) -> None:
    contact = create_resource(edge, key, CONTACTS)
    assert contact["source"] == "public_api" and contact["phone"] is None
    url = f"{CONTACTS}/{contact['id']}"
    assert_error(edge.http.patch(url, json={"account_id": None}, headers=key.bearer), 400, "validation_error")
    other = create_resource(edge, key, ACCOUNTS)
    moved = edge.http.patch(url, json={"account_id": other["id"]}, headers=key.bearer).json()["contact"]
    assert moved["account_id"] == other["id"]
    theirs = create_resource(edge, edge.key(), ACCOUNTS)
    assert_error(
        edge.http.patch(url, json={"account_id": theirs["id"]}, headers=key.bearer), 400, "validation_error"
    )


def test_contacts_filter_by_account(edge: Edge, key: Key) -> None:
    first = create_resource(edge, key, CONTACTS)
    create_resource(edge, key, CONTACTS)
    listed = edge.http.get(CONTACTS, params={"account_id": first["account_id"]}, headers=key.bearer).json()
    assert [c["id"] for c in listed["contacts"]] == [first["id"]]
    assert_error(
        edge.http.get(CONTACTS, params={"account_id": "nope"}, headers=key.bearer), 400, "validation_error"
    )
