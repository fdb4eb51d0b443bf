"""The internal plane is not open: the internal token, loopback by default, and the admin token."""

from __future__ import annotations

import secrets
import stat
import uuid
from pathlib import Path

import grpc
import pytest
from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc
from google.protobuf import struct_pb2
from hydra.crm.v1 import leads_pb2, leads_pb2_grpc
from hydra.gatekeeper.v1 import admin_pb2, admin_pb2_grpc

from hydractl.cli import CliError, create_tenant
from hydractl.stack import PROCESSES, Stack
from services.common.channels import internal_metadata
from testbed.stack import grpc_processes, stack_env

TOKEN = secrets.token_urlsafe(24)


def lead(name: str) -> leads_pb2.CreateLeadRequest:
    body = struct_pb2.Struct()
    body.update({"name": name})
    return leads_pb2.CreateLeadRequest(lead=body)


def test_identity_metadata_counts_only_with_the_internal_token(tmp_path: Path) -> None:
    env = stack_env(tmp_path, HYDRA_INTERNAL_TOKEN=TOKEN)
    tenant = str(uuid.uuid4())
    scopes = ["crm:read", "crm:write"]
    with (
        grpc_processes(env, "gatekeeper", "crm"),
        grpc.insecure_channel(f"127.0.0.1:{env['HYDRA_CRM_PORT']}") as crm,
        grpc.insecure_channel(f"127.0.0.1:{env['HYDRA_GATEKEEPER_PORT']}") as gatekeeper,
    ):
        leads = leads_pb2_grpc.LeadServiceStub(crm)
        for token in (None, "x" * len(TOKEN), TOKEN[:-1]):
            with pytest.raises(grpc.RpcError) as refused:
                leads.CreateLead(
                    lead("forged"), metadata=internal_metadata(tenant, scopes, internal_token=token)
                )
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        vouched = internal_metadata(tenant, scopes, internal_token=TOKEN)
        leads.CreateLead(lead("real"), metadata=vouched)
        assert [
            row.name.string_value
            for row in leads.ListLeads(leads_pb2.ListLeadsRequest(), metadata=vouched).leads
        ] == ["real"]

        # Envoy's rate-limit service is internal too; a caller without the token cannot spend an IP's budget.
        limits = rls_pb2_grpc.RateLimitServiceStub(gatekeeper)
        with pytest.raises(grpc.RpcError) as refused:
            limits.ShouldRateLimit(rls_pb2.RateLimitRequest(domain="hydra"))
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_a_process_refuses_a_non_loopback_address_without_the_internal_token(tmp_path: Path) -> None:
    env = stack_env(tmp_path, HYDRA_HOST="0.0.0.0")
    stack = Stack(env=env, log_dir=tmp_path / "logs")
    stack.log_dir.mkdir()
    for name in PROCESSES:
        stack.start_process(name)
    try:
        for name, process in stack.processes.items():
            assert process.wait(60) == 2, stack.log_tail(name)
            assert "HYDRA_INTERNAL_TOKEN" in stack.log_tail(name)
    finally:
        stack.stop()


def test_the_key_admin_api_needs_its_token_with_no_configuration(tmp_path: Path) -> None:
    env = stack_env(tmp_path / "data")
    with (
        grpc_processes(env, "gatekeeper"),
        grpc.insecure_channel(f"127.0.0.1:{env['HYDRA_GATEKEEPER_PORT']}") as channel,
    ):
        admin = admin_pb2_grpc.KeyAdminServiceStub(channel)
        for metadata in ((), (("x-hydra-admin-token", "guess" * 8),)):
            with pytest.raises(grpc.RpcError) as refused:
                admin.ListTenants(admin_pb2.ListTenantsRequest(), metadata=metadata)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED

        # The zero-configuration path: the stack wrote a token beside its data, for its owner only,
        # and hydractl with the same data dir finds it.
        token_file = tmp_path / "data" / "admin-token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert create_tenant(env, "acme")
        with pytest.raises(CliError, match="HYDRA_ADMIN_TOKEN"):
            create_tenant({**env, "HYDRA_DATA_DIR": str(tmp_path / "elsewhere")}, "intruder")
