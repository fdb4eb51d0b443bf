"""Losing the PostgreSQL connections (a database restart, a failover) is a 503 at worst, never a 500."""

from __future__ import annotations

import uuid
from pathlib import Path

import grpc
import psycopg
import pytest
from google.protobuf import struct_pb2
from hydra.crm.v1 import leads_pb2, leads_pb2_grpc

from services.common.channels import internal_metadata
from testbed.stack import grpc_processes, stack_env


def drop_connections(url: str, application: str) -> int:
    """Terminates every server connection of one application, as a database restart would."""
    with psycopg.connect(url, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            (application,),
        ).fetchall()
    return len(rows)


@pytest.mark.parametrize("call", ["CreateLead", "GetLead", "ListLeads"])
def test_lost_database_connections_answer_503_or_succeed_and_the_pool_recovers(
    tmp_path: Path, postgres_url: str, call: str
) -> None:
    env = stack_env(tmp_path, database_url=postgres_url)
    metadata = internal_metadata(str(uuid.uuid4()), ["crm:read", "crm:write"])
    body = struct_pb2.Struct()
    body.update({"name": "Before"})
    with grpc_processes(env, "crm"), grpc.insecure_channel(f"127.0.0.1:{env['HYDRA_CRM_PORT']}") as channel:
        leads = leads_pb2_grpc.LeadServiceStub(channel)
        lead = leads.CreateLead(leads_pb2.CreateLeadRequest(lead=body), metadata=metadata).lead
        leads.GetLead(leads_pb2.GetLeadRequest(id=lead.id), metadata=metadata)
        leads.ListLeads(leads_pb2.ListLeadsRequest(), metadata=metadata)
        assert drop_connections(postgres_url, "hydra-crm") > 0

        requests = {
            "CreateLead": leads_pb2.CreateLeadRequest(lead=body),
            "GetLead": leads_pb2.GetLeadRequest(id=lead.id),
            "ListLeads": leads_pb2.ListLeadsRequest(),
        }
        outcomes = []
        for _ in range(3):
            try:
                getattr(leads, call)(requests[call], metadata=metadata, timeout=10)
                outcomes.append("ok")
            except grpc.RpcError as error:
                outcomes.append(error.code().name)
        assert set(outcomes) <= {"ok", "UNAVAILABLE"}, outcomes
        assert outcomes[-1] == "ok", outcomes  # the pool reconnected
