"""Renders a kustomization offline, for machines without kustomize (no registry this project installs from
ships it): only what deploy/k8s uses — resources (files and directories), namespace, images, replicas,
patches by path (merged into the object of the same kind and name) and secretGenerator from env files
without name suffixes. Anything else is refused, so a new kustomize feature in the manifests fails the
test instead of rendering wrong; where kubectl is installed the tests compare this with `kubectl
kustomize`."""

from __future__ import annotations

import base64
import copy
from pathlib import Path
from typing import Any

import yaml

_KNOWN = {
    "apiVersion",
    "kind",
    "resources",
    "namespace",
    "images",
    "replicas",
    "patches",
    "secretGenerator",
    "generatorOptions",
}


def render(directory: Path) -> list[dict[str, Any]]:
    """The objects the kustomization in `directory` produces."""
    spec = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(spec) - _KNOWN
    if unknown:
        raise ValueError(f"{directory}: kustomize fields this renderer does not know: {sorted(unknown)}")
    objects: list[dict[str, Any]] = []
    for resource in spec.get("resources", []):
        path = directory / resource
        objects += render(path) if path.is_dir() else [d for d in yaml.safe_load_all(path.read_text()) if d]
    for generated in spec.get("secretGenerator", []):
        if not spec.get("generatorOptions", {}).get("disableNameSuffixHash"):
            raise ValueError("secretGenerator is rendered only with disableNameSuffixHash")
        data: dict[str, str] = {}
        for env_file in generated.get("envs", []):
            for line in (directory / env_file).read_text().splitlines():
                if line.strip() and not line.lstrip().startswith("#"):
                    key, _, value = line.partition("=")
                    data[key.strip()] = base64.b64encode(value.encode()).decode()
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": generated["name"]},
                "type": "Opaque",
                "data": data,
            }
        )
    for patch in spec.get("patches", []):
        change = yaml.safe_load((directory / patch["path"]).read_text())
        (target,) = [o for o in objects if _same(o, change)]
        _merge(target, change)
    for image in spec.get("images", []):
        for container in _containers(objects):
            name, _, _tag = container["image"].partition(":")
            if name == image["name"]:
                container["image"] = f"{image.get('newName', name)}:{image['newTag']}"
    for wanted in spec.get("replicas", []):
        (deployment,) = [
            o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == wanted["name"]
        ]
        deployment["spec"]["replicas"] = wanted["count"]
    if "namespace" in spec:
        for obj in objects:
            obj["metadata"]["namespace"] = spec["namespace"]
    return objects


def _same(obj: dict[str, Any], patch: dict[str, Any]) -> bool:
    return obj["kind"] == patch["kind"] and obj["metadata"]["name"] == patch["metadata"]["name"]


def _merge(target: dict[str, Any], change: dict[str, Any]) -> None:
    """Mappings merged key by key; anything else (lists included) replaced."""
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def _containers(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found = []
    for obj in objects:
        pod = obj.get("spec", {}).get("template", {}).get("spec", {})
        found += pod.get("containers", []) + pod.get("initContainers", [])
    return found
