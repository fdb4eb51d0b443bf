"""The Kubernetes manifests: the committed base is what the generator writes, the example overlay renders,
every object is valid against the Kubernetes schemas (offline), and Envoy loads the config its
Deployment generates for the cluster."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from edge import envoy_config
from hydractl import k8s, processes
from hydractl.stack import envoy_binary
from tests.support import kustomize

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "deploy" / "k8s" / "base"
EXAMPLE = ROOT / "deploy" / "k8s" / "overlays" / "example"
KUBERNETES = "1.30.0"


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """The example overlay rendered, with its secrets.env made from the committed example."""
    tree = tmp_path_factory.mktemp("k8s") / "k8s"
    shutil.copytree(ROOT / "deploy" / "k8s", tree, ignore=shutil.ignore_patterns("secrets.env"))
    overlay = tree / "overlays" / "example"
    filled = (overlay / "secrets.env.example").read_text().replace("TOKEN=\n", "TOKEN=" + "t" * 32 + "\n")
    (overlay / "secrets.env").write_text(filled)
    objects = kustomize.render(overlay)
    kubectl = shutil.which("kubectl")
    if kubectl:  # the real kustomize, where installed, renders the same objects
        out = subprocess.run([kubectl, "kustomize", str(overlay)], capture_output=True, text=True, check=True)
        theirs = [_unwrapped(d) for d in yaml.safe_load_all(out.stdout) if d]
        assert sorted(map(_key, theirs)) == sorted(map(_key, objects))
        assert {_key(o): o for o in theirs} == {_key(o): o for o in objects}
    return objects


def _unwrapped(obj: dict[str, Any]) -> dict[str, Any]:
    """kustomize wraps long base64 values over lines; their bytes are the same."""
    if obj["kind"] == "Secret":
        obj["data"] = {k: "".join(v.split()) for k, v in obj.get("data", {}).items()}
    return obj


def _key(obj: dict[str, Any]) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def test_the_committed_base_is_what_the_generator_writes(tmp_path: Path) -> None:
    written = {path.name: path.read_text() for path in k8s.write(tmp_path)}
    committed = {path.name: path.read_text() for path in BASE.iterdir()}
    assert committed == written, "deploy/k8s/base is stale: run hydractl k8s --out deploy/k8s/base"


def test_every_object_is_valid_kubernetes(rendered: list[dict[str, Any]]) -> None:
    for obj in rendered:
        kubernetes_validate.validate(obj, KUBERNETES, strict=True)
    kinds = [_key(o) for o in rendered]
    for server in (p.name for p in processes.ALL):
        for kind in ("Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"):
            assert f"{kind}/{server}" in kinds
    assert {"Deployment/envoy", "Job/migrate", "Secret/hydra", "Deployment/crm-delivery"} <= set(kinds)


def test_the_overlay_applies(rendered: list[dict[str, Any]]) -> None:
    by_key = {_key(o): o for o in rendered}
    crm = by_key["Deployment/crm"]
    assert crm["spec"]["replicas"] == 3 and {o["metadata"]["namespace"] for o in rendered} == {"hydra"}
    (container,) = crm["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "registry.example.com/hydra:1.0.0"
    assert container["readinessProbe"]["grpc"] == {"port": 50051}
    assert by_key["ConfigMap/hydra"]["data"]["HYDRA_PUBLIC_BASE_URL"] == "https://api.example.com"
    secret_refs = {
        e["valueFrom"]["secretKeyRef"]["key"]
        for e in container["env"]
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    assert secret_refs == {
        "HYDRA_CRM_DATABASE_URL",
        "HYDRA_INTERNAL_TOKEN",
        "HYDRA_REDIS_URL",
    }  # its own only
    assert set(secret_refs) <= set(by_key["Secret/hydra"]["data"])


def test_envoy_loads_the_config_its_deployment_generates(
    rendered: list[dict[str, Any]], tmp_path: Path
) -> None:
    by_key = {_key(o): o for o in rendered}
    (container,) = by_key["Deployment/envoy"]["spec"]["template"]["spec"]["containers"]
    env: dict[str, str] = {}
    for entry in container["env"]:
        source = entry.get("valueFrom", {})
        if "value" in entry:
            env[entry["name"]] = entry["value"]
        elif "secretKeyRef" in source:
            env[entry["name"]] = "t" * 32
        else:
            env[entry["name"]] = by_key[f"ConfigMap/{source['configMapKeyRef']['name']}"]["data"][
                entry["name"]
            ]
    settings = envoy_config.EdgeSettings.from_env(env)
    assert settings.upstreams["crm"] == ["crm:50051"] and settings.upstreams["authz"] == ["gatekeeper:50049"]
    path = envoy_config.write(settings, tmp_path / "envoy.yaml")
    clusters = {
        c["name"]: c
        for c in json.loads(json.dumps(yaml.safe_load(path.read_text())))["static_resources"]["clusters"]
    }
    assert clusters["crm"]["type"] == "STRICT_DNS"
    checked = subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout[-2000:] + checked.stderr[-2000:]
