"""What the Kubernetes tests share: rendering an overlay, walking its pod specs, and the
replica count KEDA's HPA asks for."""

from __future__ import annotations

import math
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
OVERLAYS = ("cpu", "gpu")
KUBERNETES_VERSION = "1.32.0"  # the oldest release still supported upstream when written
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}


def render(overlay: str) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl (with kustomize) is needed to render deploy/k8s"
    out = subprocess.run(
        [kubectl, "kustomize", str(K8S / "overlays" / overlay)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def pod_specs(objects: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for obj in objects:
        if obj["kind"] in WORKLOADS:
            yield obj["metadata"]["name"], obj["spec"]["template"]["spec"]


def containers(spec: dict[str, Any], init: bool = True) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = list(spec.get("containers", []))
    return found + list(spec.get("initContainers", [])) if init else found


def env_value(container: dict[str, Any], name: str) -> str | None:
    for variable in container.get("env", []):
        if variable["name"] == name:
            return str(variable.get("value"))
    return None


def desired_replicas(
    metric: float, threshold: float, activation: float, min_replicas: int, max_replicas: int
) -> int:
    """The replicas KEDA's HPA asks for from a Prometheus trigger of metricType AverageValue:
    below the activation threshold KEDA takes a minReplicaCount of 0 down to 0; otherwise
    ceil(metric / threshold), held between the minimum (at least 1 while active) and the
    maximum. (HPA's behavior then paces the change; it does not change the target.)"""
    if min_replicas == 0 and metric <= activation:
        return 0
    wanted = math.ceil(metric / threshold) if metric > 0 else 0
    return max(min(wanted, max_replicas), max(min_replicas, 1))


def prometheus_rules(objects: list[dict[str, Any]]) -> dict[str, Any]:
    """The PrometheusRule's groups as a Prometheus rule file."""
    (rule,) = [o for o in objects if o["kind"] == "PrometheusRule"]
    return {"groups": rule["spec"]["groups"]}
