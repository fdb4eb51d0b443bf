"""Every process serves Prometheus metrics: scraped around requests through the edge, its counters move by
RPC and status code, and Envoy's statistics are there in the same format."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from services.common.config import METRICS_PORTS
from tests.e2e.conftest import Edge
from tests.support.polling import wait_until


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample at `url`, by name and labels."""
    text = httpx.get(url, timeout=5).text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def handled(samples: dict, method: str, code: str) -> float:
    labels = {
        ("grpc_type", "unary"),
        ("grpc_service", "hydra.crm.v1.LeadService"),
        ("grpc_method", method),
        ("grpc_code", code),
    }
    return samples.get(("grpc_server_handled_total", frozenset(labels)), 0.0)


def test_rpc_counters_move_by_method_and_status_code(edge: Edge) -> None:
    urls = edge.stack.metrics_urls()
    assert {"gatekeeper", "crm", "tickets", "instances", "public", "workflows", "envoy"} <= set(urls)
    key = edge.key()
    before = scrape(urls["crm"])
    created = edge.http.post("/api/v1/leads", json={"name": "Counted"}, headers=key.bearer)
    assert created.status_code == 201
    missing = edge.http.get(f"/api/v1/leads/{uuid.uuid4()}", headers=key.bearer)
    assert missing.status_code == 404
    after = scrape(urls["crm"])
    assert handled(after, "CreateLead", "OK") - handled(before, "CreateLead", "OK") == 1
    assert handled(after, "GetLead", "NOT_FOUND") - handled(before, "GetLead", "NOT_FOUND") == 1
    latency = frozenset(
        {("grpc_type", "unary"), ("grpc_service", "hydra.crm.v1.LeadService"), ("grpc_method", "GetLead")}
    )
    count = ("grpc_server_handling_seconds_count", latency)
    assert after[count] - before.get(count, 0.0) == 1
    assert after[("grpc_server_in_flight", latency)] == 0
    # The process's own gauges, refreshed from its database every few seconds.
    gauges = wait_until(
        lambda: (
            (s := scrape(urls["crm"]))
            and ("hydra_outbox_pending_events", frozenset({("service", "crm")})) in s
            and s
        ),
        what="the outbox gauge",
    )
    assert ("hydra_db_pool_size", frozenset({("service", "crm")})) in gauges
    assert any(name == "process_cpu_seconds_total" for name, _ in gauges)


def test_every_process_and_envoy_answer_a_scrape(edge: Edge) -> None:
    for name, url in edge.stack.metrics_urls().items():
        samples = scrape(url)
        assert samples, name
        if name == "envoy":
            assert any(n.startswith("envoy_cluster_upstream_rq") for n, _ in samples), name
    if edge.backend == "postgres_redis":  # consumers in delivery processes: their metrics too
        assert "crm-delivery" in edge.stack.metrics_urls()


def test_every_process_is_alive_and_ready_with_its_dependencies_up(edge: Edge) -> None:
    """Beside its metrics, each process answers /livez and /readyz: a server needs its database (and
    reports Redis, which it can do without); a delivery process needs both."""
    for name, url in edge.stack.metrics_urls().items():
        if name == "envoy":
            continue
        base = url.removesuffix("/metrics")
        assert httpx.get(f"{base}/livez", timeout=5).status_code == 200, name
        ready = httpx.get(f"{base}/readyz", timeout=5)
        assert ready.status_code == 200, (name, ready.text)
        dependencies = ready.json()["dependencies"]
        assert dependencies["database"] == {"up": True, "required": True}, name
        if edge.backend == "postgres_redis" and name not in {"gatekeeper", "workflows"}:
            assert dependencies["redis"] == {"up": True, "required": name.endswith("-delivery")}, name
        else:
            assert "redis" not in dependencies, name


def test_the_gatekeeper_counts_its_rate_limit_decisions_and_key_cache_lookups(edge: Edge) -> None:
    url = edge.stack.metrics_urls()["gatekeeper"]
    key = edge.key(rate_limit=1)
    store = "redis" if edge.backend == "postgres_redis" else "in_process"
    decisions = {
        d: ("hydra_rate_limit_decisions_total", frozenset({("decision", d), ("store", store)}))
        for d in ("admitted", "limited")
    }
    lookups = {r: ("hydra_key_cache_lookups_total", frozenset({("result", r)})) for r in ("hit", "miss")}
    before = scrape(url)
    assert edge.http.get("/api/v1/leads", headers=key.bearer).status_code == 200
    assert edge.http.get("/api/v1/leads", headers=key.bearer).status_code == 429
    after = scrape(url)
    assert after[decisions["admitted"]] - before.get(decisions["admitted"], 0) >= 1
    assert after[decisions["limited"]] - before.get(decisions["limited"], 0) >= 1
    assert sum(after[lookups[r]] - before.get(lookups[r], 0) for r in lookups) >= 2


OBSERVABILITY = Path(__file__).resolve().parents[2] / "deploy" / "observability"
_SUFFIXES = ("_bucket", "_count", "_sum", "_total")


def served_families(url: str) -> set[str]:
    """The metric families `url` declares (labelled ones too, before any sample), and its sample names."""
    families = list(text_string_to_metric_families(httpx.get(url, timeout=5).text))
    return {f.name for f in families} | {s.name for f in families for s in f.samples}


def dashboard_queries() -> list[str]:
    dashboard = json.loads((OBSERVABILITY / "grafana" / "dashboards" / "hydra.json").read_text())
    return [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]


def alert_queries() -> list[str]:
    groups = yaml.safe_load((OBSERVABILITY / "alerts.yml").read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


@pytest.mark.parametrize("queries", [dashboard_queries, alert_queries], ids=["dashboard", "alerts"])
def test_the_dashboard_and_alerts_ask_only_for_metrics_the_processes_serve(
    edge: Edge, queries: Callable[[], list[str]]
) -> None:
    exprs = " ".join(queries())
    names_only = re.sub(r"\{[^}]*\}|by \([^)]*\)", "", exprs)  # not label names
    asked = set(re.findall(r"\b((?:grpc_server|hydra|envoy)_[a-z_]+)", names_only))
    served = set().union(*(served_families(url) for url in edge.stack.metrics_urls().values()))
    missing = {
        n
        for n in asked
        if n not in served and not any(n.endswith(s) and n[: -len(s)] in served for s in _SUFFIXES)
    }
    assert not missing, missing


def test_prometheus_scrapes_each_process_on_its_metrics_port() -> None:
    prometheus = yaml.safe_load((OBSERVABILITY / "prometheus.yml").read_text())
    assert prometheus["rule_files"] == ["alerts.yml"]
    scrape_configs = prometheus["scrape_configs"]
    (hydra,) = [job for job in scrape_configs if job["job_name"] == "hydra"]
    targets = {entry["names"][0]: entry["port"] for entry in hydra["dns_sd_configs"]}
    assert targets == {
        name.removesuffix("_metrics").replace("_", "-"): port for name, port in METRICS_PORTS.items()
    }


def test_with_redis_each_consumers_lag_is_measured(edge: Edge) -> None:
    if edge.backend != "postgres_redis":
        pytest.skip("events travel in-process: no stream, no lag")
    url = edge.stack.metrics_urls()["crm"]
    lag = ("hydra_event_consumer_lag", frozenset({("service", "crm"), ("consumer", "event-hub")}))
    edge.http.post("/api/v1/leads", json={"name": "Lagging"}, headers=edge.key().bearer)
    # Refreshed every 5 s; the forwarder keeps up, so the figure itself is small and not asserted.
    wait_until(lambda: lag in scrape(url), what="the event hub forwarder's lag")
