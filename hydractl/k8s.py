"""The Kubernetes manifests of the platform (deploy/k8s/base), generated from the processes the stack
runs, so they name the same servers, ports and settings: a Deployment, headless Service,
HorizontalPodAutoscaler and PodDisruptionBudget per server and for Envoy, a Deployment per delivery
process, and the migration Job. PostgreSQL and Redis are outside, by URL, from the Secret `hydra`.

`hydractl k8s --out deploy/k8s/base` writes them; `make test` checks the committed copy is current.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from hydractl import processes
from services.common import config
from services.common.health import LIVE_PATH, READY_PATH

IMAGE = "hydra"
SECRET = "hydra"
EDGE_PORT = 8080
ENVOY_STATS_PORT = 9902  # the listener that serves only Envoy's /stats/prometheus
_LABEL = "app.kubernetes.io/name"
_COMPONENT = "app.kubernetes.io/component"
_SERVERS = {process.name: process for process in processes.ALL}
# Secret keys every process reads (the per-service database URLs are added per server).
_SHARED_SECRETS = ("HYDRA_INTERNAL_TOKEN", "HYDRA_REDIS_URL")
_SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}


TRACING_CONFIG = "hydra-tracing"  # an optional ConfigMap of OTEL_* variables

# Where clients reach the edge (deployments' mcpEndpoint, the embedded issuer): the ConfigMap `hydra`.
_BASE_URL = {
    "name": "HYDRA_PUBLIC_BASE_URL",
    "valueFrom": {"configMapKeyRef": {"name": "hydra", "key": "HYDRA_PUBLIC_BASE_URL"}},
}


def _port(name: str) -> int:
    return config.DEFAULT_PORTS[name]


def cluster_env() -> dict[str, str]:
    """Where each process finds the others in the cluster: Services by name, each resolving to every
    ready pod (headless), spread by Envoy and by the services' round-robin channels."""
    env = {
        "HYDRA_HOST": "0.0.0.0",
        "HYDRA_DATA_DIR": "/data",
        "HYDRA_EVENTS_CONSUMERS": "separate",
        # A pod's address changes with every restart: Envoy and peers re-resolve the Service names.
        "HYDRA_SHUTDOWN_DELAY_MS": "5000",
        # Each pod's /metrics on its own address, for the cluster's Prometheus (the pod annotations).
        "HYDRA_METRICS_HOST": "0.0.0.0",
    }
    for server, process in _SERVERS.items():
        for port_name in (server, *process.http_ports):
            env[f"HYDRA_{port_name.upper()}_UPSTREAMS"] = f"{server}:{_port(port_name)}"
        env[f"HYDRA_{server.upper()}_ADDR"] = f"dns:///{server}:{_port(server)}"
    return env


def _env(values: Mapping[str, str], secrets: Iterable[str]) -> list[dict[str, Any]]:
    plain = [{"name": k, "value": v} for k, v in sorted(values.items())]
    hidden = [
        {"name": k, "valueFrom": {"secretKeyRef": {"name": SECRET, "key": k}}} for k in sorted(set(secrets))
    ]
    return plain + hidden


def _metadata(name: str, component: str) -> dict[str, Any]:
    return {"name": name, "labels": {_LABEL: "hydra", _COMPONENT: component}}


def _selector(component: str) -> dict[str, str]:
    return {_LABEL: "hydra", _COMPONENT: component}


def _container(
    name: str, command: list[str], env: list[dict[str, Any]], *, cpu: str = "250m", memory: str = "256Mi"
) -> dict[str, Any]:
    return {
        "name": name,
        "image": IMAGE,
        "command": command,
        "env": env,
        # Tracing, when wanted: OTEL_* variables in this ConfigMap reach every process and Envoy alike.
        "envFrom": [{"configMapRef": {"name": TRACING_CONFIG, "optional": True}}],
        "resources": {
            "requests": {"cpu": cpu, "memory": memory},
            "limits": {"cpu": "1", "memory": "512Mi"},
        },
        "securityContext": _SECURITY,
        "volumeMounts": [{"name": "data", "mountPath": "/data"}, {"name": "tmp", "mountPath": "/tmp"}],
    }


def _scraped(deployment: dict[str, Any], port: int, path: str = "/metrics") -> dict[str, Any]:
    """The Deployment, its pods annotated for Prometheus's usual Kubernetes discovery; the port named."""
    template = deployment["spec"]["template"]
    template["metadata"]["annotations"] = {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(port),
        "prometheus.io/path": path,
    }
    container = template["spec"]["containers"][0]
    container.setdefault("ports", []).append({"name": "metrics", "containerPort": port})
    return deployment


def _deployment(name: str, component: str, container: dict[str, Any], replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(name, component),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": _selector(component)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": _selector(component)},
                "spec": {
                    "terminationGracePeriodSeconds": 30,
                    "containers": [container],
                    "volumes": [{"name": "data", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}],
                },
            },
        },
    }


def _scaling(name: str, component: str, *, least: int, most: int) -> list[dict[str, Any]]:
    """The HorizontalPodAutoscaler (CPU) and the PodDisruptionBudget of a Deployment."""
    return [
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": _metadata(name, component),
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                "minReplicas": least,
                "maxReplicas": most,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {"type": "Utilization", "averageUtilization": 70},
                        },
                    }
                ],
            },
        },
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": _metadata(name, component),
            "spec": {"minAvailable": 1, "selector": {"matchLabels": _selector(component)}},
        },
    ]


def _server(name: str) -> list[dict[str, Any]]:
    """A server: its Deployment (gRPC readiness, TCP liveness), headless Service, autoscaler and budget."""
    process = _SERVERS[name]
    grpc_port = _port(name)
    secrets = [*_SHARED_SECRETS, f"HYDRA_{name.upper()}_DATABASE_URL"]
    if name in ("gatekeeper", "instances"):
        secrets.append("HYDRA_ADMIN_TOKEN")
    container = _container(name, ["python", "-m", process.module], [*_env(cluster_env(), secrets), _BASE_URL])
    ports = [(name, grpc_port)] + [(p, _port(p)) for p in process.http_ports]
    container["ports"] = [{"name": p[:15], "containerPort": n} for p, n in ports]
    # Ready while its database answers (the gRPC health it serves); alive while its event loop turns
    # (/livez), so that a database outage takes it out of rotation without restarting it.
    container["readinessProbe"] = {"grpc": {"port": grpc_port}, "periodSeconds": 5, "failureThreshold": 2}
    container["livenessProbe"] = _alive(config.METRICS_PORTS[f"{name}_metrics"])
    container["startupProbe"] = {"tcpSocket": {"port": grpc_port}, "periodSeconds": 2, "failureThreshold": 60}
    deployment = _scraped(
        _deployment(name, name, container, replicas=2), config.METRICS_PORTS[f"{name}_metrics"]
    )
    if name == "gatekeeper":
        # The embedded issuer's signing keys: one set for every replica (hydractl users rotate-key makes it).
        deployment["spec"]["template"]["spec"]["volumes"].append(
            {"name": "id-token-keys", "secret": {"secretName": "hydra-id-token-keys", "optional": True}}
        )
        container["volumeMounts"].append(
            {"name": "id-token-keys", "mountPath": "/data/id-token-keys", "readOnly": True}
        )
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(name, name),
        "spec": {
            "clusterIP": "None",  # every ready pod's address, for Envoy's and the peers' own balancing
            "selector": _selector(name),
            "ports": [{"name": p[:15], "port": n, "targetPort": n} for p, n in ports],
        },
    }
    return [deployment, service, *_scaling(name, name, least=2, most=10)]


def _delivery(name: str) -> dict[str, Any]:
    """A server's event consumers in a Deployment of their own (they share work across replicas)."""
    process = _SERVERS[name]
    secrets = [*_SHARED_SECRETS, f"HYDRA_{name.upper()}_DATABASE_URL"]
    container = _container(
        f"{name}-delivery", ["python", "-m", process.module, "deliver"], _env(cluster_env(), secrets)
    )
    port = config.METRICS_PORTS[f"{name}_delivery_metrics"]
    # Ready while its database and Redis answer (it reads its events from Redis); alive while it turns.
    container["readinessProbe"] = {"httpGet": {"path": READY_PATH, "port": port}, "periodSeconds": 5}
    container["livenessProbe"] = _alive(port)
    deployment = _deployment(f"{name}-delivery", f"{name}-delivery", container, replicas=1)
    return _scraped(deployment, port)


def _alive(metrics_port: int) -> dict[str, Any]:
    """Liveness on the process's metrics port: its event loop has checked its dependencies lately."""
    return {"httpGet": {"path": LIVE_PATH, "port": metrics_port}, "periodSeconds": 10, "failureThreshold": 3}


def _envoy() -> list[dict[str, Any]]:
    """Envoy: its config generated at start by the same code as everywhere (edge/envoy_config.py) from
    this environment, the Services' names as upstreams."""
    values = {
        **cluster_env(),
        "HYDRA_EDGE_HOST": "0.0.0.0",
        "HYDRA_EDGE_PORT": str(EDGE_PORT),
        "HYDRA_ENVOY_STATS_PORT": str(ENVOY_STATS_PORT),
    }
    command = [
        "sh",
        "-c",
        "python -m edge.envoy_config --out /tmp/envoy.yaml"
        " && exec envoy -c /tmp/envoy.yaml --disable-hot-restart",
    ]
    container = _container("envoy", command, [*_env(values, ["HYDRA_INTERNAL_TOKEN"]), _BASE_URL], cpu="500m")
    container["ports"] = [{"name": "http", "containerPort": EDGE_PORT}]
    # Ready when every cluster has a healthy replica (/healthz); alive while it listens.
    container["readinessProbe"] = {"httpGet": {"path": "/healthz", "port": EDGE_PORT}, "periodSeconds": 5}
    container["livenessProbe"] = {
        "tcpSocket": {"port": EDGE_PORT},
        "periodSeconds": 10,
        "failureThreshold": 3,
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata("envoy", "envoy"),
        "spec": {
            "selector": _selector("envoy"),
            "ports": [{"name": "http", "port": 80, "targetPort": EDGE_PORT}],
        },
    }
    return [
        _scraped(_deployment("envoy", "envoy", container, replicas=2), ENVOY_STATS_PORT, "/stats/prometheus"),
        service,
        *_scaling("envoy", "envoy", least=2, most=10),
    ]


def _migration() -> dict[str, Any]:
    """Every service's migrations, once per release, before the new pods take traffic."""
    secrets = [f"HYDRA_{name.upper()}_DATABASE_URL" for name in _SERVERS]
    container = _container("migrate", ["hydractl", "migrate"], _env({"HYDRA_DATA_DIR": "/data"}, secrets))
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _metadata("migrate", "migrate"),
        "spec": {
            "backoffLimit": 3,
            "template": {
                "metadata": {"labels": _selector("migrate")},
                "spec": {
                    "restartPolicy": "OnFailure",
                    "containers": [container],
                    "volumes": [{"name": "data", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}],
                },
            },
        },
    }


def manifests() -> dict[str, list[dict[str, Any]]]:
    """Every object of the base, by the file it goes in."""
    files: dict[str, list[dict[str, Any]]] = {f"{name}.yaml": _server(name) for name in _SERVERS}
    for process in processes.ALL:
        if process.events is not None:
            files[f"{process.name}-delivery.yaml"] = [_delivery(process.name)]
    files["envoy.yaml"] = _envoy()
    files["migrate.yaml"] = [_migration()]
    files["config.yaml"] = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": _metadata("hydra", "config"),
            "data": {"HYDRA_PUBLIC_BASE_URL": "http://hydra.example.com"},
        }
    ]
    return files


def write(directory: Path) -> list[Path]:
    """Writes the base (each file, and its kustomization.yaml); returns the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    files = manifests()
    for name, objects in files.items():
        path = directory / name
        path.write_text(render(objects))
        written.append(path)
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": sorted(files),
    }
    path = directory / "kustomization.yaml"
    path.write_text(HEADER + json.dumps(kustomization, indent=2) + "\n")
    written.append(path)
    return written


HEADER = (
    "# Generated by `hydractl k8s --out deploy/k8s/base` from the stack's processes: edit the generator.\n"
)


def render(objects: list[dict[str, Any]]) -> str:
    """YAML documents (JSON is YAML: no YAML library needed, and nothing is left to its guessing)."""
    return HEADER + "---\n".join(json.dumps(o, indent=2) + "\n" for o in objects)
