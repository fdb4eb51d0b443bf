"""Sites, page-view tracking and form submissions (seed 004) through the real edge."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import random
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from hydractl.cli import main
from tests.e2e.conftest import Edge, core_key, create_site
from tests.e2e.test_core_routes import assert_detail

TRACK = "/v1/public/analytics/track"
SUBMIT = "/v1/public/forms/submit"


@contextlib.contextmanager
def visitor(edge: Edge) -> Iterator[httpx.Client]:
    """A client with its own loopback source address, so the per-IP limits it meets are its own."""
    address = f"127.{random.randint(1, 254)}.{random.randint(0, 255)}.{random.randint(1, 254)}"
    transport = httpx.HTTPTransport(local_address=address)
    with httpx.Client(base_url=edge.stack.edge_url, transport=transport, timeout=10) as client:
        yield client


def validation_errors(response: httpx.Response) -> list[tuple[tuple, str]]:
    return [(tuple(e["loc"]), e["type"]) for e in assert_detail(response, 422)]


def test_a_tenant_publishes_lists_renames_and_deletes_sites(edge: Edge) -> None:
    key = core_key(edge)
    site = create_site(edge, key, domain="www.example.com")
    assert set(site) == {"id", "tenant_id", "name", "domain", "tracking_token", "created_at", "updated_at"}
    assert site["tenant_id"] == key.tenant and site["domain"] == "www.example.com"
    assert site["tracking_token"] != site["id"]
    uuid.UUID(site["tracking_token"])
    other = create_site(edge, key)
    assert other["domain"] is None
    listed = edge.http.get("/v1/sites", headers=key.api_key).json()
    assert listed == {"sites": [other, site], "count": 2}
    renamed = edge.http.patch(f"/v1/sites/{site['id']}", json={"name": "Renamed"}, headers=key.api_key)
    assert renamed.status_code == 200 and renamed.json()["name"] == "Renamed"
    assert (
        edge.http.patch(
            f"/v1/sites/{site['id']}", json={"tracking_token": str(uuid.uuid4())}, headers=key.api_key
        ).status_code
        == 422
    )
    deleted = edge.http.delete(f"/v1/sites/{site['id']}", headers=key.api_key)
    assert deleted.status_code == 204 and deleted.content == b""
    assert_detail(edge.http.get(f"/v1/sites/{site['id']}", headers=key.api_key), 404)


def test_site_input_is_validated(edge: Edge) -> None:
    key = core_key(edge)
    response = edge.http.post("/v1/sites", json={"domain": "x" * 254, "color": "red"}, headers=key.api_key)
    assert set(validation_errors(response)) == {
        (("body", "name"), "missing"),
        (("body", "domain"), "string_too_long"),
        (("body", "color"), "extra_forbidden"),
    }


def test_a_page_view_is_stored_under_the_sites_tenant_and_summarised(edge: Edge) -> None:
    key = core_key(edge)
    site = create_site(edge, key)
    events = [
        {"page_path": "/pricing", "session_id": "s1", "device_type": "mobile", "screen_width": 390},
        {"page_path": "/pricing", "session_id": "s2", "referrer": "https://news.example.com/"},
        {"page_path": "/", "session_id": "s1"},
    ]
    with visitor(edge) as client:
        for event in events:
            response = client.post(TRACK, json={"site_id": site["tracking_token"], **event})
            assert response.status_code == 204, response.text
            assert response.content == b""
            assert response.headers["x-ratelimit-limit"] == "100"
    summary = edge.http.get(f"/v1/sites/{site['id']}/analytics", headers=key.api_key)
    assert summary.status_code == 200, summary.text
    today = dt.datetime.now(dt.UTC).date().isoformat()
    assert summary.json() == {
        "site_id": site["id"],
        "days": 30,
        "page_views": 3,
        "sessions": 2,
        "by_path": [{"page_path": "/pricing", "page_views": 2}, {"page_path": "/", "page_views": 1}],
        "by_day": [{"date": today, "page_views": 3}],
    }
    # Another site of the same tenant saw none of it.
    empty = edge.http.get(f"/v1/sites/{create_site(edge, key)['id']}/analytics?days=1", headers=key.api_key)
    assert empty.json()["page_views"] == 0 and empty.json()["days"] == 1
    for days in ("0", "366"):
        response = edge.http.get(f"/v1/sites/{site['id']}/analytics?days={days}", headers=key.api_key)
        assert validation_errors(response) == [(("query", "days"), "days_range")]


def test_tracking_needs_a_known_tracking_token_and_valid_fields(edge: Edge) -> None:
    site = create_site(edge, core_key(edge))
    with visitor(edge) as client:
        unknown = client.post(TRACK, json={"site_id": str(uuid.uuid4()), "page_path": "/"})
        assert assert_detail(unknown, 404) == "Site not found"
        # The config id is for forms; analytics takes the tracking token only.
        assert_detail(client.post(TRACK, json={"site_id": site["id"], "page_path": "/"}), 404)
        response = client.post(
            TRACK,
            json={
                "site_id": "not-a-uuid",
                "page_path": "/" * 2049,
                "screen_width": "wide",
                "utm": "x",
            },
        )
        assert set(validation_errors(response)) == {
            (("body", "site_id"), "uuid_parsing"),
            (("body", "page_path"), "string_too_long"),
            (("body", "screen_width"), "int_type"),
            (("body", "utm"), "extra_forbidden"),
        }
        assert validation_errors(client.post(TRACK, json={"site_id": site["tracking_token"]})) == [
            (("body", "page_path"), "missing")
        ]
        assert (
            client.post(TRACK, json={"site_id": site["tracking_token"], "page_path": "/" * 2048}).status_code
            == 204
        )


def test_a_deleted_sites_token_stops_tracking(edge: Edge) -> None:
    key = core_key(edge)
    site = create_site(edge, key)
    with visitor(edge) as client:
        assert (
            client.post(TRACK, json={"site_id": site["tracking_token"], "page_path": "/"}).status_code == 204
        )
        assert edge.http.delete(f"/v1/sites/{site['id']}", headers=key.api_key).status_code == 204
        deadline = time.monotonic() + 10  # other replicas' caches expire within seconds
        while time.monotonic() < deadline:
            response = client.post(TRACK, json={"site_id": site["tracking_token"], "page_path": "/"})
            if response.status_code == 404:
                break
            time.sleep(0.2)
        assert assert_detail(response, 404) == "Site not found"


def test_the_101st_event_from_one_ip_is_refused(edge: Edge) -> None:
    site = create_site(edge, core_key(edge))
    body = {"site_id": site["tracking_token"], "page_path": "/"}
    with visitor(edge) as client:
        statuses = [client.post(TRACK, json=body).status_code for _ in range(100)]
        assert statuses == [204] * 100
        refused = client.post(TRACK, json=body)
        assert assert_detail(refused, 429) == "Rate limit exceeded"
        assert refused.headers["x-ratelimit-remaining"] == "0"
        assert int(refused.headers["retry-after"]) >= 1
    with visitor(edge) as other:
        assert other.post(TRACK, json=body).status_code == 204


def test_a_spoofed_forwarded_for_header_does_not_escape_the_limit(edge: Edge) -> None:
    site = create_site(edge, core_key(edge))
    body = {"site_id": site["tracking_token"], "page_path": "/"}
    with visitor(edge) as client:
        statuses = [
            client.post(
                TRACK,
                json=body,
                headers={"X-Forwarded-For": f"198.51.100.{n}", "X-Real-IP": f"203.0.113.{n}"},
            ).status_code
            for n in range(101)
        ]
    assert statuses[:100] == [204] * 100
    assert statuses[100] == 429


def test_a_form_submission_is_received_listed_and_limited_per_ip(edge: Edge) -> None:
    key = core_key(edge)
    site = create_site(edge, key)
    with visitor(edge) as client:
        ids = []
        for n in range(5):
            response = client.post(
                SUBMIT,
                json={
                    "site_id": site["id"],
                    "form_data": {"message": f"hi {n}", "n": n},
                    "page_slug": "contact",
                },
            )
            assert response.status_code == 200, response.text
            body = response.json()
            assert list(body) == ["status", "submission_id"] and body["status"] == "received"
            ids.append(body["submission_id"])
        refused = client.post(SUBMIT, json={"site_id": site["id"], "form_data": {}})
        assert assert_detail(refused, 429) == "Rate limit exceeded"
        assert refused.headers["x-ratelimit-limit"] == "5"
    listed = edge.http.get(f"/v1/sites/{site['id']}/submissions", headers=key.api_key)
    assert listed.status_code == 200, listed.text
    submissions = listed.json()["submissions"]
    assert [s["id"] for s in submissions] == ids[::-1]
    assert submissions[0] == {
        "id": ids[-1],
        "site_id": site["id"],
        "form_data": {"message": "hi 4", "n": 4},
        "email": None,
        "page_slug": "contact",
        "lead_id": None,
        "created_at": submissions[0]["created_at"],
    }
    limited = edge.http.get(f"/v1/sites/{site['id']}/submissions?limit=2", headers=key.api_key).json()
    assert limited["count"] == 2
    no_scope = core_key(edge, key.tenant, scopes=["sites:read"])
    assert_detail(edge.http.get(f"/v1/sites/{site['id']}/submissions", headers=no_scope.api_key), 403)


def test_form_input_is_validated(edge: Edge) -> None:
    site = create_site(edge, core_key(edge))
    with visitor(edge) as client:
        too_many = {f"field{n}": n for n in range(51)}
        response = client.post(
            SUBMIT, json={"site_id": site["id"], "form_data": too_many, "email": "not-an-email"}
        )
        assert set(validation_errors(response)) == {
            (("body", "form_data"), "too_long"),
            (("body", "email"), "value_error"),
        }
    with visitor(edge) as client:
        assert validation_errors(client.post(SUBMIT, json={"site_id": site["id"]})) == [
            (("body", "form_data"), "missing")
        ]
        fifty = {f"field{n}": n for n in range(50)}
        assert client.post(SUBMIT, json={"site_id": site["id"], "form_data": fifty}).status_code == 200
        # The tracking token is for analytics; forms take the config id only.
        unknown = client.post(SUBMIT, json={"site_id": site["tracking_token"], "form_data": {}})
        assert assert_detail(unknown, 404) == "Site not found"


def wait_for(check, timeout: float = 15.0):  # type: ignore[no-untyped-def]
    """Polls `check` until it returns something truthy (asynchronous side effects)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def test_a_submission_with_an_email_creates_one_crm_lead_and_later_ones_never_change_it(edge: Edge) -> None:
    core = core_key(edge)
    support = edge.key(core.tenant, scopes=["crm:read"])
    site = create_site(edge, core)
    email = f"visitor-{uuid.uuid4().hex[:8]}@example.com"

    def leads() -> list[dict]:
        listed = edge.http.get("/api/v1/leads?limit=100", headers=support.bearer).json()["leads"]
        return [lead for lead in listed if (lead["email"] or "").lower() == email.lower()]

    def submission_lead(submission_id: str) -> str | None:
        listed = edge.http.get(f"/v1/sites/{site['id']}/submissions", headers=core.api_key).json()
        return next(s["lead_id"] for s in listed["submissions"] if s["id"] == submission_id)

    with visitor(edge) as client:
        first = client.post(
            SUBMIT,
            json={"site_id": site["id"], "email": email, "form_data": {"name": "Ada", "company": "Engines"}},
        ).json()["submission_id"]
        (lead,) = wait_for(leads)
        assert lead["source"] == "website_form" and lead["name"] == "Ada" and lead["company"] == "Engines"
        assert wait_for(lambda: submission_lead(first)) == lead["id"]
        second = client.post(
            SUBMIT,
            json={
                "site_id": site["id"],
                "email": email.upper(),
                "form_data": {"name": "Mallory", "phone": "+1 555 0199", "company": "Evil"},
            },
        ).json()["submission_id"]
        assert wait_for(lambda: submission_lead(second)) == lead["id"]
    # The anonymous second submission is attached to the lead but changed nothing on it; what it said
    # stays on the submission.
    (unchanged,) = leads()
    assert unchanged == lead
    listed = edge.http.get(f"/v1/sites/{site['id']}/submissions", headers=core.api_key).json()
    (kept,) = [s for s in listed["submissions"] if s["id"] == second]
    assert kept["form_data"] == {"name": "Mallory", "phone": "+1 555 0199", "company": "Evil"}
    # Another tenant's leads never see it.
    stranger = edge.key(scopes=["crm:read"])
    listed = edge.http.get("/api/v1/leads?limit=100", headers=stranger.bearer).json()["leads"]
    assert all((lead["email"] or "").lower() != email.lower() for lead in listed)


def test_browsers_may_call_the_public_routes_from_any_site(edge: Edge) -> None:
    preflight = edge.http.options(
        TRACK,
        headers={
            "Origin": "https://www.example.com",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert preflight.status_code == 200, preflight.text
    assert preflight.headers["access-control-allow-origin"] == "https://www.example.com"
    assert "POST" in preflight.headers["access-control-allow-methods"]
    site = create_site(edge, core_key(edge))
    with visitor(edge) as client:
        response = client.post(
            TRACK,
            json={"site_id": site["tracking_token"], "page_path": "/"},
            headers={"Origin": "https://a.test"},
        )
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == "https://a.test"
    # The key-authenticated API is not opened to browsers.
    closed = edge.http.options(
        "/v1/sites", headers={"Origin": "https://evil.test", "Access-Control-Request-Method": "GET"}
    )
    assert "access-control-allow-origin" not in closed.headers


def test_hydractl_publishes_and_lists_a_tenants_sites(edge: Edge, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    tenant = edge.tenant()
    monkeypatch.setattr(os, "environ", {**os.environ, **edge.env})
    main(["sites", "create", "--tenant", tenant, "--name", "Docs", "--domain", "docs.example.com", "--json"])
    created = json.loads(capsys.readouterr().out)
    assert (
        created["name"] == "Docs"
        and created["domain"] == "docs.example.com"
        and created["tenant_id"] == tenant
    )
    main(["sites", "list", "--tenant", tenant, "--json"])
    assert json.loads(capsys.readouterr().out) == [created]
    # The site it printed works for tracking straight away.
    with visitor(edge) as client:
        tracked = client.post(TRACK, json={"site_id": created["tracking_token"], "page_path": "/"})
    assert tracked.status_code == 204
    with pytest.raises(SystemExit):
        main(["sites", "create", "--tenant", tenant, "--name", "x" * 201])
    assert "name" in capsys.readouterr().err


def test_a_form_never_changes_a_lead_the_tenant_made(edge: Edge) -> None:
    core = core_key(edge)
    support = edge.key(core.tenant, scopes=["crm:read", "crm:write"])
    site = create_site(edge, core)
    email = f"customer-{uuid.uuid4().hex[:8]}@example.com"
    made = edge.http.post(
        "/api/v1/leads",
        json={"email": email, "name": "Real Customer", "phone": "+44 20 7946 0000", "company": None},
        headers=support.bearer,
    ).json()["lead"]
    with visitor(edge) as client:
        submission = client.post(
            SUBMIT,
            json={
                "site_id": site["id"],
                "email": email,
                "form_data": {
                    "first_name": "Not",
                    "last_name": "Them",
                    "phone": "0",
                    "company": "Takeover Ltd",
                },
            },
        ).json()["submission_id"]

    def linked() -> str | None:
        listed = edge.http.get(f"/v1/sites/{site['id']}/submissions", headers=core.api_key).json()
        return next(s["lead_id"] for s in listed["submissions"] if s["id"] == submission)

    assert wait_for(linked) == made["id"]
    assert edge.http.get(f"/api/v1/leads/{made['id']}", headers=support.bearer).json()["lead"] == made


def test_form_values_over_several_lines_become_one_line_lead_details(edge: Edge) -> None:
    core = core_key(edge)
    support = edge.key(core.tenant, scopes=["crm:read"])
    site = create_site(edge, core)
    email = f"lines-{uuid.uuid4().hex[:8]}@example.com"
    with visitor(edge) as client:
        response = client.post(
            SUBMIT,
            json={
                "site_id": site["id"],
                "email": email,
                "form_data": {"name": "Ada\n  Lovelace", "message": "a\nb"},
            },
        )
        assert response.status_code == 200, response.text

    def lead() -> dict | None:
        listed = edge.http.get("/api/v1/leads?limit=100", headers=support.bearer).json()["leads"]
        return next((lead for lead in listed if lead["email"] == email), None)

    assert wait_for(lead)["name"] == "Ada Lovelace"
