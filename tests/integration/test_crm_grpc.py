"""crm over real gRPC on SQLite and PostgreSQL: identity from metadata, tenancy, error trailers, schema."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa
from google.protobuf import struct_pb2
from hydra.crm.v1 import (
    accounts_pb2,
    accounts_pb2_grpc,
    contacts_pb2,
    contacts_pb2_grpc,
    leads_pb2,
    leads_pb2_grpc,
)

from services.common.channels import internal_metadata
from services.common.delivery import DeliverySettings
from services.crm.config import Settings
from services.crm.server import PROCESS
from testbed.stack import grpc_processes, stack_env
from tests.support.database import service_rows


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'crm.sqlite3'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def channel(database_url: str, tmp_path: Path) -> Iterator[grpc.Channel]:
    env = stack_env(tmp_path, database_url=database_url)
    with grpc_processes(env, "crm"), grpc.insecure_channel(f"127.0.0.1:{env['HYDRA_CRM_PORT']}") as channel:
        yield channel


@pytest.fixture
def stub(channel: grpc.Channel) -> leads_pb2_grpc.LeadServiceStub:
    return leads_pb2_grpc.LeadServiceStub(channel)


def body(**values: object) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(values)
    return s


def caller(scopes: tuple[str, ...] = ("crm:read", "crm:write")) -> tuple[str, tuple[tuple[str, str], ...]]:
    tenant = str(uuid.uuid4())
    return tenant, internal_metadata(tenant, scopes)


def test_crud_is_tenant_scoped(stub: leads_pb2_grpc.LeadServiceStub) -> None:
    tenant, md = caller()
    _, other = caller()
    lead = stub.CreateLead(leads_pb2.CreateLeadRequest(lead=body(email="a@example.com")), metadata=md)
    assert lead.lead.tenant_id == tenant and lead.lead.phone.WhichOneof("kind") == "null_value"
    assert stub.GetLead(leads_pb2.GetLeadRequest(id=lead.lead.id), metadata=md).lead == lead.lead
    with pytest.raises(grpc.RpcError) as caught:
        stub.GetLead(leads_pb2.GetLeadRequest(id=lead.lead.id), metadata=other)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert stub.ListLeads(leads_pb2.ListLeadsRequest(), metadata=other).count == 0
    updated = stub.UpdateLead(
        leads_pb2.UpdateLeadRequest(id=lead.lead.id, lead=body(email=None, name="N")), metadata=md
    ).lead
    assert updated.email.WhichOneof("kind") == "null_value" and updated.name.string_value == "N"
    stub.DeleteLead(leads_pb2.DeleteLeadRequest(id=lead.lead.id), metadata=md)
    assert stub.ListLeads(leads_pb2.ListLeadsRequest(), metadata=md).count == 0


def test_identity_and_scope_are_enforced_without_the_edge(stub: leads_pb2_grpc.LeadServiceStub) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        stub.ListLeads(leads_pb2.ListLeadsRequest())
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    _, read_only = caller(("crm:read",))
    with pytest.raises(grpc.RpcError) as caught:
        stub.CreateLead(leads_pb2.CreateLeadRequest(lead=body(name="x")), metadata=read_only)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_lookup_contacts_answers_only_the_callers_contacts(channel: grpc.Channel) -> None:
    accounts = accounts_pb2_grpc.AccountServiceStub(channel)
    contacts = contacts_pb2_grpc.ContactServiceStub(channel)
    ids = {}
    for name in ("mine", "theirs"):
        _, md = caller()
        account = accounts.CreateAccount(
            accounts_pb2.CreateAccountRequest(account=body(name=name)), metadata=md
        ).account
        ids[name] = contacts.CreateContact(
            contacts_pb2.CreateContactRequest(
                contact=body(email=f"{name}@example.com", account_id=account.id)
            ),
            metadata=md,
        ).contact.id
        ids[f"{name} md"] = md
    unknown = str(uuid.uuid4())
    found = contacts.LookupContacts(
        contacts_pb2.LookupContactsRequest(ids=[ids["mine"], ids["theirs"], unknown, ids["mine"]]),
        metadata=ids["mine md"],
    )
    assert [(c.id, c.email) for c in found.contacts] == [(ids["mine"], "mine@example.com")]
    assert not contacts.LookupContacts(contacts_pb2.LookupContactsRequest(), metadata=ids["mine md"]).contacts

    for bad in (["not-a-uuid"], [unknown] * 501):
        with pytest.raises(grpc.RpcError) as caught:
            contacts.LookupContacts(contacts_pb2.LookupContactsRequest(ids=bad), metadata=ids["mine md"])
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    _, no_scope = caller(("tickets:read",))
    with pytest.raises(grpc.RpcError) as caught:
        contacts.LookupContacts(contacts_pb2.LookupContactsRequest(ids=[unknown]), metadata=no_scope)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_errors_carry_the_finished_body_in_trailers(stub: leads_pb2_grpc.LeadServiceStub) -> None:
    _, md = caller()
    with pytest.raises(grpc.RpcError) as caught:
        stub.CreateLead(leads_pb2.CreateLeadRequest(lead=body(email="bad")), metadata=md)
    trailers = dict(caught.value.trailing_metadata())
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert trailers["x-http-status"] == "400"
    assert json.loads(trailers["x-error-body"]) == {
        "error": "email: value is not a valid email address",
        "code": "validation_error",
    }


def test_migrations_are_idempotent_and_postgres_uses_the_crm_schema(database_url: str) -> None:
    settings = Settings(
        address="127.0.0.1:0",
        delivery=DeliverySettings.from_env({}),
        database_url=database_url.replace(".sqlite3", ".crm.sqlite3"),
    )
    PROCESS.migrate(settings)
    PROCESS.migrate(settings)
    if database_url.startswith("postgresql"):
        engine = sa.create_engine(database_url.replace("postgresql://", "postgresql+psycopg://"))
        with engine.connect() as conn:
            schemas = (
                conn.execute(
                    sa.text("SELECT table_schema FROM information_schema.tables WHERE table_name = 'leads'")
                )
                .scalars()
                .all()
            )
        engine.dispose()
        assert schemas == ["crm"]


def crm_rows(database_url: str, query: str) -> list:
    """Rows of a query on crm's own tables (its schema on PostgreSQL, its file on SQLite)."""
    return service_rows(database_url.replace(".sqlite3", ".crm.sqlite3"), "crm", query)


def test_stage_change_writes_lifecycle_event_outbox_and_audit(database_url: str, tmp_path: Path) -> None:
    env = stack_env(tmp_path, database_url=database_url)
    md = internal_metadata(str(uuid.uuid4()), ("crm:read", "crm:write"), key_id="key-123")
    with grpc_processes(env, "crm"), grpc.insecure_channel(f"127.0.0.1:{env['HYDRA_CRM_PORT']}") as channel:
        accounts = accounts_pb2_grpc.AccountServiceStub(channel)
        account = accounts.CreateAccount(
            accounts_pb2.CreateAccountRequest(account=body(name="A")), metadata=md
        ).account
        update = accounts_pb2.UpdateAccountRequest(
            id=account.id, account=body(lifecycle_stage="at_risk", notes="x")
        )
        accounts.UpdateAccount(update, metadata=md)
        accounts.UpdateAccount(
            accounts_pb2.UpdateAccountRequest(id=account.id, account=body(notes="y")), metadata=md
        )
    events = crm_rows(database_url, "SELECT from_stage, to_stage FROM lifecycle_events")
    assert [tuple(e) for e in events] == [("prospect", "at_risk")]
    topics = sorted(r[0] for r in crm_rows(database_url, "SELECT topic FROM outbox"))
    # The transition's own events, and each write announced to the tenant's webhooks and events feed.
    assert topics == [
        "account.created",
        "account.stage_changed",
        "account.updated",
        "account.updated",
        "account.went_at_risk",
    ]
    audit = crm_rows(database_url, "SELECT key_id, resource, action FROM audit_log ORDER BY at")
    assert [tuple(a) for a in audit] == [("key-123", "account", a) for a in ("create", "update", "update")]
