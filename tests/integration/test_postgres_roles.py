"""compose.yaml's database: one role per service, owning its own schema and nothing else."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest

from hydractl.cli import create_tenant, mint
from testbed.servers import _postgres_bin, create_database
from testbed.stack import running_stack, stack_env

ROLES_SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "postgres-roles.sh"
SERVICES = ("gatekeeper", "crm", "tickets", "instances", "public", "workflows")


def test_every_service_runs_on_its_own_role_which_reaches_no_other_schema(
    postgres_admin_url: str, tmp_path: Path
) -> None:
    name = f"roles_{uuid.uuid4().hex[:8]}"
    admin_url = create_database(postgres_admin_url, name)
    server = urlsplit(admin_url)
    passwords = {s: uuid.uuid4().hex for s in SERVICES}
    subprocess.run(
        ["sh", str(ROLES_SCRIPT)],
        env={
            "PATH": f"{_postgres_bin()}:{os.environ['PATH']}",
            "PGHOST": str(server.hostname),
            "PGPORT": str(server.port),
            "POSTGRES_USER": "postgres",
            "POSTGRES_DB": name,
            **{f"HYDRA_{s.upper()}_DB_PASSWORD": p for s, p in passwords.items()},
        },
        check=True,
        timeout=60,
    )
    url = {
        s: f"postgresql://hydra_{s}:{p}@{server.hostname}:{server.port}/{name}" for s, p in passwords.items()
    }
    env = stack_env(tmp_path, **{f"HYDRA_{s.upper()}_DATABASE_URL": u for s, u in url.items()})

    with running_stack(env) as stack, httpx.Client(base_url=stack.edge_url, timeout=10) as http:
        key = mint(env, tenant=create_tenant(env, "roles"), scopes=["crm:write", "tickets:write"])
        headers = {"Authorization": f"Bearer {key['key']}"}
        account = http.post("/api/v1/accounts", json={"name": "A"}, headers=headers).json()["account"]
        contact = http.post(
            "/api/v1/contacts", json={"email": "c@example.com", "account_id": account["id"]}, headers=headers
        ).json()["contact"]
        ticket = http.post(
            "/api/v1/tickets", json={"title": "T", "customer_id": contact["id"]}, headers=headers
        )
        assert ticket.status_code == 201, ticket.text

    with psycopg.connect(url["crm"], autocommit=True) as crm:
        assert crm.execute("SELECT count(*) FROM crm.accounts").fetchone() == (1,)
        for statement in (
            "SELECT * FROM gatekeeper.api_keys",
            "SELECT * FROM tickets.tickets",
            "CREATE TABLE website.stolen (id int)",
            "CREATE TABLE public.stray (id int)",
            "CREATE SCHEMA elsewhere",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                crm.execute(statement)
