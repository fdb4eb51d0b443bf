"""The real stack (Envoy + gatekeeper + crm), started once per backend and driven over HTTP."""

from __future__ import annotations

import datetime as dt
import mailbox
import secrets
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from email.message import Message
from pathlib import Path

import grpc
import httpx
import pytest
from hydra.crm.v1 import conversations_pb2, conversations_pb2_grpc

from hydractl.cli import create_tenant, create_user, id_token, mint
from hydractl.stack import Stack
from services.common.channels import internal_metadata
from testbed.servers import create_database, free_port
from testbed.smtp import SmtpSink
from testbed.stack import running_stack, stack_env
from tests.support.stripe_server import FakeStripe

BACKENDS = ["embedded", "postgres_redis"]


@dataclass(frozen=True)
class Key:
    """A minted key: its secret, record id, and tenant."""

    secret: str
    id: str
    tenant: str

    @property
    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret}"}

    @property
    def api_key(self) -> dict[str, str]:
        return {"X-Api-Key": self.secret}


@dataclass(frozen=True)
class User:
    """A marketplace user of the platform's own issuer, with a fresh ID token."""

    id: str
    email: str
    token: str

    @property
    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class Edge:
    """A running stack and an HTTP client pointed at its edge (and its SMTP server, when it uses one)."""

    backend: str
    stack: Stack
    env: dict[str, str]
    http: httpx.Client
    smtp: SmtpSink | None = None

    def mail_to(self, address: str) -> list[Message]:
        """Email delivered to `address`: by the test SMTP server, or into the embedded maildir."""
        if self.smtp is not None:
            return self.smtp.to(address)
        box = mailbox.Maildir(Path(self.env["HYDRA_DATA_DIR"]) / "maildir", create=True)
        return [m for m in box if m["To"] == address]

    def tenant(self) -> str:
        return create_tenant(self.env, f"tenant-{uuid.uuid4().hex[:8]}")

    def key(
        self,
        tenant: str | None = None,
        scopes: Sequence[str] = ("crm:read", "crm:write"),
        kind: str = "hmcp",
        rate_limit: int = 100_000,
    ) -> Key:
        tenant = tenant or self.tenant()
        data = mint(self.env, tenant=tenant, scopes=scopes, kind=kind, rate_limit=rate_limit)
        return Key(secret=data["key"], id=data["id"], tenant=tenant)

    def user(self, email: str | None = None) -> User:
        """A new marketplace user (or the one with `email`) and an ID token for them."""
        email = email or f"user-{uuid.uuid4().hex[:8]}@example.com"
        made = create_user(self.env, email)
        return User(made["user_id"], email, id_token(self.env, email, dt.timedelta(hours=1)))


# Tenants' model servers in these tests listen on 127.0.0.2, which the operator opens (loopback is
# otherwise refused); the operator's own default server, with its key, on 127.0.0.3. Small stream caps
# keep the tests that fill them cheap.
TENANT_MODEL_HOST = "127.0.0.2"
OPERATOR_MODEL_HOST = "127.0.0.3"
OPERATOR_MODEL_KEY = "sk-operator-e2e"


def agent_env() -> dict[str, str]:
    return {
        "HYDRA_AGENT_ALLOWED_HOSTS": TENANT_MODEL_HOST,
        "HYDRA_AGENT_BASE_URL": f"http://{OPERATOR_MODEL_HOST}:{free_port()}/v1",
        "HYDRA_AGENT_API_KEY": OPERATOR_MODEL_KEY,
        "HYDRA_WIDGET_STREAMS_PER_IP": "3",
        "HYDRA_WIDGET_STREAMS_PER_INSTANCE": "2",
        "HYDRA_WIDGET_RECHECK_SECONDS": "1",
    }


# Tenants' webhook receivers in these tests listen on 127.0.0.4, which the operator opens (loopback is
# otherwise refused); attempts are retried within seconds, not over a day.
WEBHOOK_HOST = "127.0.0.4"
WEBHOOK_RETRIES = (0.3, 0.3, 0.3, 0.3)


# A receiver's address where nothing listens: deliveries to it fail at once (no DNS, no waiting).
NOWHERE = f"http://{WEBHOOK_HOST}:9/hook"


def webhook_env() -> dict[str, str]:
    return {
        "HYDRA_WEBHOOK_ALLOWED_HOSTS": WEBHOOK_HOST,
        "HYDRA_WEBHOOK_RETRY_SECONDS": ",".join(str(s) for s in WEBHOOK_RETRIES),
        "HYDRA_WEBHOOK_TIMEOUT_SECONDS": "5",
    }


STRIPE_WEBHOOK_SECRET = "whsec_e2e"
STRIPE_PRICES = {
    "pro_monthly": "price_pro_m",
    "pro_annual": "price_pro_y",
    "team_monthly": "price_team_m",
    "team_annual": "price_team_y",
}


def named_request(response: httpx.Response) -> dict:
    """An error's body without its request id, checked to be the id in the response's x-request-id."""
    body = response.json()
    request_id = response.headers.get("x-request-id")
    assert request_id and body.get("request_id") == request_id, (dict(response.headers), body)
    return {name: value for name, value in body.items() if name != "request_id"}


@pytest.fixture(scope="session")
def fake_stripe() -> Iterator[FakeStripe]:
    with FakeStripe() as stripe:
        yield stripe


@pytest.fixture(scope="session", params=BACKENDS)
def edge(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    data_dir = tmp_path_factory.mktemp(request.param)
    stripe: FakeStripe = request.getfixturevalue("fake_stripe")
    edge_env = {
        "HYDRA_STRIPE_SECRET_KEY": "sk_test_e2e",
        "HYDRA_STRIPE_WEBHOOK_SECRET": STRIPE_WEBHOOK_SECRET,
        "HYDRA_STRIPE_PRICES": ",".join(f"{k}={v}" for k, v in STRIPE_PRICES.items()),
        "HYDRA_STRIPE_API_BASE": stripe.base_url,
        # Short enough for a slow-header test to finish quickly; no real client takes this long.
        "HYDRA_EDGE_REQUEST_HEADERS_TIMEOUT_SECONDS": "2",
        # Many tests present unknown keys from 127.0.0.1: room for all of them within a minute.
        "HYDRA_INVALID_KEYS_PER_MINUTE": "200",
        # A user's new plan limits their requests within a second, not the default half-minute.
        "HYDRA_USER_CACHE_MS": "500",
        # One test opens a free plan's whole month of MCP sessions (500) from this address.
        "HYDRA_MCP_REQUESTS_PER_MINUTE": "5000",
        **webhook_env(),
    }
    if request.param == "embedded":
        env = stack_env(data_dir, **agent_env(), **edge_env)
    else:
        admin_url = request.getfixturevalue("postgres_admin_url")
        env = stack_env(
            data_dir,
            database_url=create_database(admin_url, f"e2e_{uuid.uuid4().hex[:8]}"),
            redis_url=request.getfixturevalue("redis_url"),
            HYDRA_EVENTS_CONSUMERS="separate",  # the production shape: consumers in delivery processes
            **agent_env(),
            **edge_env,
            HYDRA_INTERNAL_TOKEN=secrets.token_urlsafe(24),  # and an internal plane that needs it
        )
    with running_stack(env) as stack, httpx.Client(base_url=stack.edge_url, timeout=10) as http:
        yield Edge(request.param, stack, env, http)


@pytest.fixture
def key(edge: Edge) -> Key:
    """A fresh tenant's crm key with a high limit."""
    return edge.key()


def open_conversation(
    edge: Edge,
    tenant: str,
    *,
    customer_id: str = "",
    channel_id: str = "",
    messages: Sequence[tuple[str, str]] = (),
) -> str:
    """Opens a conversation through crm's internal gRPC API (as the widget does); returns its id."""
    metadata = internal_metadata(
        tenant, ["conversations:write"], internal_token=edge.env.get("HYDRA_INTERNAL_TOKEN")
    )
    with grpc.insecure_channel(f"127.0.0.1:{edge.env['HYDRA_CRM_PORT']}") as channel:
        stub = conversations_pb2_grpc.ConversationServiceStub(channel)
        request = conversations_pb2.CreateConversationRequest(
            channel="web_chat", customer_id=customer_id, channel_id=channel_id
        )
        conversation_id = stub.CreateConversation(request, metadata=metadata).conversation.id
        for role, content in messages:
            stub.AddMessage(
                conversations_pb2.AddMessageRequest(
                    conversation_id=conversation_id, role=role, content=content
                ),
                metadata=metadata,
            )
    return conversation_id


CORE_SCOPES = (
    "instances:read",
    "instances:write",
    "instances:delete",
    "sites:read",
    "sites:write",
    "analytics:read",
    "forms:read",
    "keys:read",
    "keys:write",
    "webhooks:read",
    "webhooks:write",
    "events:read",
)


def core_key(edge: Edge, tenant: str | None = None, scopes: Sequence[str] = CORE_SCOPES, **kw: int) -> Key:
    """A HydraCore (hc_live_) key."""
    return edge.key(tenant, scopes=scopes, kind="hc_live", **kw)


def create_instance(edge: Edge, key: Key, **fields: object) -> dict:
    """Creates an instance for the key's tenant; returns it."""
    response = edge.http.post("/v1/instances", json={"name": "Bot", **fields}, headers=key.api_key)
    assert response.status_code == 201, response.text
    return response.json()


def create_channel(edge: Edge, key: Key, instance_id: str, **fields: object) -> dict:
    """Creates a channel of an instance; returns it."""
    body = {"channel_type": "sms", "provider": "twilio", "external_identifier": "+15550100", **fields}
    response = edge.http.post(f"/v1/instances/{instance_id}/channels", json=body, headers=key.api_key)
    assert response.status_code == 201, response.text
    return response.json()


def create_site(edge: Edge, key: Key, **fields: object) -> dict:
    """Publishes a site for the key's tenant; returns it (id = config id, tracking_token)."""
    response = edge.http.post("/v1/sites", json={"name": "Site", **fields}, headers=key.api_key)
    assert response.status_code == 201, response.text
    return response.json()


def create_resource(edge: Edge, key: Key, collection: str) -> dict:
    """Creates one row of a collection (e.g. "/api/v1/contacts") for the key's tenant; returns it."""
    if collection == "/api/v1/conversations":
        return {"id": open_conversation(edge, key.tenant)}
    bodies = {
        "/api/v1/leads": lambda: {"name": "Lead"},
        "/api/v1/accounts": lambda: {"name": "Account"},
        "/api/v1/tickets": lambda: {"title": "Ticket"},
        "/api/v1/keys": lambda: {"scopes": ["crm:read"]},
        "/api/v1/webhooks": lambda: {"url": NOWHERE, "event_types": ["*"]},
        "/api/v1/contacts": lambda: {
            "email": "c@example.com",
            "account_id": create_resource(edge, key, "/api/v1/accounts")["id"],
        },
    }
    response = edge.http.post(collection, json=bodies[collection](), headers=key.bearer)
    assert response.status_code == 201, response.text
    (row,) = response.json().values()
    return row
