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
from hydra.crm.v1 import accounts_pb2, accounts_pb2_grpc, contacts_pb2, contacts_pb2_grpc

from services.common.channels import internal_metadata
from testbed.stack import grpc_processes, stack_env


def test_a_write_stuck_past_its_deadline_is_abandoned_and_rolled_back(
    tmp_path: Path, postgres_url: str
) -> None:
    env = stack_env(tmp_path, database_url=postgres_url)
    metadata = internal_metadata(str(uuid.uuid4()), ["crm:read", "crm:write"])
    # A contact is checked against its account in the create's own transaction (leads, accounts and
    # tickets are group-committed instead: a batch under way commits, and their 504 says so).
    account = struct_pb2.Struct()
    account.update({"name": "Acme"})
    with (
        grpc_processes(env, "crm"),
        grpc.insecure_channel(f"127.0.0.1:{env['HYDRA_CRM_PORT']}") as channel,
        psycopg.connect(postgres_url) as blocker,
    ):
        account_id = (
            accounts_pb2_grpc.AccountServiceStub(channel)
            .CreateAccount(accounts_pb2.CreateAccountRequest(account=account), metadata=metadata)
            .account.id
        )
        body = struct_pb2.Struct()
        body.update({"email": "late@example.com", "account_id": account_id})
        contacts = contacts_pb2_grpc.ContactServiceStub(channel)
        blocker.execute("LOCK TABLE crm.contacts IN ACCESS EXCLUSIVE MODE")  # every write to contacts waits
        with pytest.raises(grpc.RpcError) as late:
            contacts.CreateContact(
                contacts_pb2.CreateContactRequest(contact=body), metadata=metadata, timeout=2
            )
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
        assert not contacts.ListContacts(contacts_pb2.ListContactsRequest(), metadata=metadata).contacts
