"""Planning replicas: what may be asked for, which ports each replica takes, and what the stack learns."""

from __future__ import annotations

import socket

import pytest

from hydractl import replicas
from hydractl.stack import SERVERS

POSTGRES = {f"HYDRA_{n.upper()}_DATABASE_URL": "postgresql://db/hydra" for n in SERVERS}


def test_counts_are_parsed_and_bad_ones_refused() -> None:
    assert replicas.parse("crm=2, gatekeeper=3,", SERVERS) == {"crm": 2, "gatekeeper": 3}
    assert replicas.parse("", SERVERS) == {}
    for bad, says in (("billing=2", "no server named 'billing'"), ("crm=0", "1 to 16"), ("crm=x", "1 to 16")):
        with pytest.raises(replicas.ReplicaError, match=says):
            replicas.parse(bad, SERVERS)


def test_replicas_need_shared_state() -> None:
    with pytest.raises(replicas.ReplicaError, match="need PostgreSQL"):
        replicas.check({}, {"crm": 2})
    with pytest.raises(replicas.ReplicaError, match="need HYDRA_REDIS_URL"):
        replicas.check(POSTGRES, {"gatekeeper": 2})
    replicas.check(POSTGRES, {"crm": 2, "tickets": 1})
    replicas.check({**POSTGRES, "HYDRA_REDIS_URL": "redis://r"}, {"gatekeeper": 2})
    replicas.check({}, {"crm": 1})  # one of each is what SQLite runs


def test_make_run_picks_replicas_only_where_they_are_shared_and_help() -> None:
    assert replicas.sensible({}, cores=8) == {}
    assert replicas.sensible(POSTGRES, cores=2) == {}
    assert replicas.sensible(POSTGRES, cores=8) == {"crm": 2, "tickets": 2}
    assert replicas.sensible({**POSTGRES, "HYDRA_REDIS_URL": "redis://r"}, cores=4) == {
        "crm": 2,
        "tickets": 2,
        "gatekeeper": 2,
    }


def test_each_replica_gets_free_ports_and_every_address_is_shared() -> None:
    # Below the range test stacks draw their ports from, so nothing else in the run listens here.
    ports = {
        "CRM": 17100,
        "GATEKEEPER": 17200,
        "AUTHZ": 17300,
        "TOOLS": 17400,
        "CRM_METRICS": 17600,
        "CRM_DELIVERY_METRICS": 17700,
        "GATEKEEPER_METRICS": 17800,
    }
    env = {f"HYDRA_{name}_PORT": str(port) for name, port in ports.items()}
    with socket.socket() as busy:  # something already listens where crm's second replica would go next
        busy.bind(("127.0.0.1", 17201))
        busy.listen()
        plan = replicas.plan(env, {"crm": 3, "gatekeeper": 2, "tickets": 1}, SERVERS)
    # crm-2 would take 17200 (the gatekeeper's) then 17201 (busy); gatekeeper-2's ports step past crm-3's.
    # Metrics ports move too, past every port taken (17700 and 17800 are others'), but are no upstreams.
    assert plan.replica_env == {
        "crm-2": {
            "HYDRA_CRM_PORT": "17202",
            "HYDRA_CRM_METRICS_PORT": "17701",
            "HYDRA_CRM_DELIVERY_METRICS_PORT": "17801",
        },
        "crm-3": {
            "HYDRA_CRM_PORT": "17301",
            "HYDRA_CRM_METRICS_PORT": "17802",
            "HYDRA_CRM_DELIVERY_METRICS_PORT": "17900",
        },
        "gatekeeper-2": {
            "HYDRA_GATEKEEPER_PORT": "17302",
            "HYDRA_AUTHZ_PORT": "17401",
            "HYDRA_TOOLS_PORT": "17500",
            "HYDRA_GATEKEEPER_METRICS_PORT": "17901",
        },
    }
    assert not any("METRICS" in name for name in plan.shared_env)
    shared = plan.shared_env
    assert shared["HYDRA_CRM_UPSTREAMS"] == "127.0.0.1:17100,127.0.0.1:17202,127.0.0.1:17301"
    assert shared["HYDRA_CRM_ADDR"] == "ipv4:" + shared["HYDRA_CRM_UPSTREAMS"]
    assert (
        shared["HYDRA_AUTHZ_UPSTREAMS"] == "127.0.0.1:17300,127.0.0.1:17401"
        and "HYDRA_AUTHZ_ADDR" not in shared
    )
    assert "HYDRA_TICKETS_UPSTREAMS" not in shared and "HYDRA_TICKETS_ADDR" not in shared
    assert plan.servers["crm-3"] == "crm" and plan.servers["tickets"] == "tickets"


def test_addresses_an_operator_set_are_kept() -> None:
    env = {"HYDRA_CRM_ADDR": "crm.internal:50051", "HYDRA_CRM_UPSTREAMS": "10.0.0.5:50051"}
    plan = replicas.plan(env, {"crm": 2}, SERVERS)
    assert "HYDRA_CRM_ADDR" not in plan.shared_env and "HYDRA_CRM_UPSTREAMS" not in plan.shared_env
