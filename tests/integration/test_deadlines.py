"""A service abandons work past its caller's deadline, and says honestly whether it may have happened."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import grpc
import psycopg
import pytest
from google.protobuf import struct_pb2
from hydra.crm.v1 import leads_pb2, leads_pb2_grpc

from services.common.channels import internal_metadata
from testbed.stack import grpc_processes, stack_env


def test_a_write_stuck_past_its_deadline_is_abandoned_and_rolled_back(
    tmp_path: Path, postgres_url: str
) -> None:
    env = stack_env(tmp_path, database_url=postgres_url)
    metadata = internal_metadata(str(uuid.uuid4()), ["crm:read", "crm:write"])
    body = struct_pb2.Struct()
    body.update({"name": "Late"})
    with (
        grpc_processes(env, "crm"),
        grpc.insecure_channel(f"127.0.0.1:{env['HYDRA_CRM_PORT']}") as channel,
        psycopg.connect(postgres_url) as blocker,
    ):
        leads = leads_pb2_grpc.LeadServiceStub(channel)
        blocker.execute("LOCK TABLE crm.leads IN ACCESS EXCLUSIVE MODE")  # every write to leads waits
        with pytest.raises(grpc.RpcError) as late:
            leads.CreateLead(leads_pb2.CreateLeadRequest(lead=body), metadata=metadata, timeout=2)
        blocker.rollback()  # the lock goes: a write still under way would now commit

        # The service answered, in its envelope, before gRPC's own deadline fired.
        assert late.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        trailers = dict(late.value.trailing_metadata() or ())
        assert json.loads(trailers["x-error-body"]) == {
            "error": "The request timed out; it may have been applied. Check before retrying.",
            "code": "server_error",
        }
        assert trailers["x-http-status"] == "504"
        time.sleep(1)
        assert not leads.ListLeads(leads_pb2.ListLeadsRequest(), metadata=metadata).leads
