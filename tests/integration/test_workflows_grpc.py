"""The workflows service over real gRPC, without the edge: what it answers without Stripe, and the
admin plane only the operator's token opens."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest
from google.protobuf import struct_pb2
from hydra.workflows.v1 import billing_pb2, billing_pb2_grpc, users_pb2, users_pb2_grpc

from services.common import config
from services.common.identity import USER_HEADER, admin_metadata
from testbed.stack import grpc_processes, stack_env


def test_without_stripe_checkout_says_how_plans_are_set_and_the_operator_sets_them(tmp_path: Path) -> None:
    env = stack_env(tmp_path)
    with (
        grpc_processes(env, "workflows"),
        grpc.insecure_channel(f"127.0.0.1:{env['HYDRA_WORKFLOWS_PORT']}") as channel,
    ):
        admin = users_pb2_grpc.UserAdminServiceStub(channel)
        operator = admin_metadata(config.admin_token(env, create=False))
        user = admin.CreateUser(users_pb2.CreateUserRequest(email="ada@example.com"), metadata=operator)
        assert user.subject.startswith("hydra|") and user.plan == "free"
        again = admin.CreateUser(users_pb2.CreateUserRequest(email="ada@example.com"), metadata=operator)
        assert again.user_id == user.user_id
        body = struct_pb2.Struct()
        body.update(
            {"priceId": "pro_monthly", "successUrl": "https://a.example/", "cancelUrl": "https://a.example/"}
        )
        billing = billing_pb2_grpc.BillingServiceStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            billing.StartCheckout(
                billing_pb2.StartCheckoutRequest(checkout=body), metadata=((USER_HEADER, user.user_id),)
            )
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        trailers = dict(refused.value.trailing_metadata() or ())
        error = json.loads(trailers["x-error-body"])["error"]
        assert "hydractl users set-plan" in error["message"] and trailers["x-http-status"] == "503"
        upgraded = admin.SetPlan(
            users_pb2.SetPlanRequest(email="ada@example.com", plan="team"), metadata=operator
        )
        assert upgraded.plan == "team"
        with pytest.raises(grpc.RpcError) as bad_plan:
            admin.SetPlan(users_pb2.SetPlanRequest(email="ada@example.com", plan="gold"), metadata=operator)
        assert bad_plan.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        for metadata in ((), admin_metadata("guess" * 8)):
            with pytest.raises(grpc.RpcError) as denied:
                admin.ResolveUser(
                    users_pb2.ResolveUserRequest(subject="s", email="e@x.io"), metadata=metadata
                )
            assert denied.value.code() == grpc.StatusCode.UNAUTHENTICATED
        # A marketplace call without the user the edge vouches for is refused, never answered.
        with pytest.raises(grpc.RpcError) as anonymous:
            users_pb2_grpc.UserServiceStub(channel).GetMe(users_pb2.GetMeRequest())
        assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED
