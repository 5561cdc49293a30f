"""deploy/k8s, rendered by kustomize per overlay: valid against the Kubernetes API of the
stated release (built-in kinds) and the operators' CRD schemas (the rest), and the rules every
workload keeps: probes, requests and limits, non-root, read-only root, pinned images, grace
periods that cover a detector's chunks, GPUs only as limits, no Secret values anywhere."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from tests.deploy.k8s import (
    K8S,
    KUBERNETES_VERSION,
    OVERLAYS,
    containers,
    desired_replicas,
    env_value,
    pod_specs,
    prometheus_rules,
    render,
)

from tally_detector.config import Settings as DetectorSettings
from tally_orchestrator.config import Settings as OrchestratorSettings

SCHEMAS = K8S / "schemas"
CRD_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "keda.sh_scaledobject_v1alpha1.json",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): "keda.sh_triggerauthentication_v1alpha1.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring.coreos.com_servicemonitor_v1.json",
    ("monitoring.coreos.com/v1", "PodMonitor"): "monitoring.coreos.com_podmonitor_v1.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "monitoring.coreos.com_prometheusrule_v1.json",
    ("rabbitmq.com/v1beta1", "RabbitmqCluster"): "rabbitmq.com_rabbitmqcluster_v1beta1.json",
    ("postgresql.cnpg.io/v1", "Cluster"): "postgresql.cnpg.io_cluster_v1.json",
}
# A slice's inference, worst case: CPU Triton shared by every detector (measured: 71.6 slices/s
# for one client alone, 36/s through the whole pipeline, on 2 cores) with a wide margin.
WORST_SLICE_S = 0.5
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|_KEY|CREDENTIAL|DATABASE_URL|AMQP_URL|REDIS_URL")


@cache
def _rendered(overlay: str) -> tuple[dict[str, Any], ...]:
    return tuple(render(overlay))


@pytest.fixture(params=OVERLAYS)
def objects(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return list(_rendered(request.param))


def _named(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def test_each_overlay_renders_the_whole_of_tally(objects: list[dict[str, Any]]) -> None:
    deployments = {o["metadata"]["name"] for o in objects if o["kind"] == "Deployment"}
    assert deployments == {
        "upload", "gateway", "orchestrator", "projector", "webhooks", "detector", "triton", "edge"
    }  # fmt: skip
    assert {o["metadata"].get("namespace") for o in objects if o["kind"] != "Namespace"} == {
        "tally"
    }


def test_built_in_kinds_are_valid_for_the_stated_kubernetes_release(
    objects: list[dict[str, Any]],
) -> None:
    checked = 0
    for obj in objects:
        if (obj["apiVersion"], obj["kind"]) in CRD_SCHEMAS:
            continue
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        checked += 1
    assert checked >= 30


def test_custom_resources_are_valid_against_their_operators_schemas(
    objects: list[dict[str, Any]],
) -> None:
    seen = set()
    for obj in objects:
        key = (obj["apiVersion"], obj["kind"])
        if "." not in obj["apiVersion"].split("/")[0] or obj["apiVersion"].startswith(
            ("apps/", "policy/", "networking.k8s.io/", "autoscaling/")
        ):
            continue
        assert key in CRD_SCHEMAS, f"no schema kept for {key}"
        schema = json.loads((SCHEMAS / CRD_SCHEMAS[key]).read_text())
        jsonschema.Draft7Validator(schema).validate(obj)
        seen.add(key)
    assert {k for k in CRD_SCHEMAS if k[1] != "TriggerAuthentication"} <= seen


def test_a_misspelt_field_fails_the_crd_schema() -> None:
    scaled = _named(list(_rendered("gpu")), "ScaledObject", "detector")
    broken = json.loads(json.dumps(scaled))
    broken["spec"]["maxReplicas"] = broken["spec"].pop("maxReplicaCount")
    schema = json.loads((SCHEMAS / CRD_SCHEMAS[("keda.sh/v1alpha1", "ScaledObject")]).read_text())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(schema).validate(broken)


def test_every_container_has_probes_requests_and_limits(objects: list[dict[str, Any]]) -> None:
    for name, spec in pod_specs(objects):
        for container in containers(spec, init=False):
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                assert probe in container, (name, container["name"], probe)
        for container in containers(spec):
            resources = container.get("resources", {})
            for part in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(part, {})), (name, part)


def test_every_pod_runs_as_non_root_read_only_without_capabilities(
    objects: list[dict[str, Any]],
) -> None:
    for name, spec in pod_specs(objects):
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True, name
        assert pod["runAsUser"] > 0, name
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec.get("automountServiceAccountToken") is False, name
        for container in containers(spec):
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, (name, container["name"])
            assert context["allowPrivilegeEscalation"] is False, (name, container["name"])
            assert context["capabilities"] == {"drop": ["ALL"]}, (name, container["name"])


def test_images_are_pinned(objects: list[dict[str, Any]]) -> None:
    images = [c["image"] for _, spec in pod_specs(objects) for c in containers(spec)]
    images += [o["spec"]["imageName"] for o in objects if o["kind"] == "Cluster"]
    images += [o["spec"]["image"] for o in objects if o["kind"] == "RabbitmqCluster"]
    assert len(images) >= 8
    for image in images:
        if "@sha256:" in image:
            continue
        repository, _, tag = image.rpartition(":")
        assert repository, f"{image}: no tag"
        assert "/" not in tag, f"{image}: no tag"  # a registry port, not a tag
        assert tag != "latest", image
        if repository.startswith("tally/"):
            assert tag == "0.1.0", f"{image}: not the release app.kubernetes.io/version names"


def test_shutdown_grace_covers_what_a_pod_holds(objects: list[dict[str, Any]]) -> None:
    for name, spec in pod_specs(objects):
        grace = spec.get("terminationGracePeriodSeconds", 30)  # Kubernetes' default
        for container in containers(spec, init=False):
            drain = env_value(container, "TALLY_SHUTDOWN_GRACE_S")
            if drain is not None:
                assert grace > float(drain) + 5, name  # drain, then exit, before the kill
    (detector,) = [spec for name, spec in pod_specs(objects) if name == "detector"]
    drain_s = float(env_value(detector["containers"][0], "TALLY_SHUTDOWN_GRACE_S") or 0)
    held = DetectorSettings.model_fields["prefetch"].default  # chunks a detector holds
    chunk = OrchestratorSettings.model_fields["chunk_slices"].default
    assert drain_s >= held * chunk * WORST_SLICE_S


def test_gpus_are_limits_only_and_only_in_the_gpu_overlay() -> None:
    for overlay in OVERLAYS:
        found = []
        for name, spec in pod_specs(list(_rendered(overlay))):
            for container in containers(spec):
                resources = container["resources"]
                assert "nvidia.com/gpu" not in resources.get("requests", {}), (overlay, name)
                if "nvidia.com/gpu" in resources.get("limits", {}):
                    found.append((name, resources["limits"]["nvidia.com/gpu"]))
        assert found == ([("triton", 1)] if overlay == "gpu" else []), overlay
    (triton,) = [s for n, s in pod_specs(list(_rendered("gpu"))) if n == "triton"]
    assert triton["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert triton["containers"][0]["image"].startswith("tally/triton-gpu:")


def test_each_triton_pod_has_the_registrys_hand_on_it_and_is_ready_once_reconciled() -> None:
    for overlay in OVERLAYS:
        (triton,) = [s for n, s in pod_specs(list(_rendered(overlay))) if n == "triton"]
        server, models = triton["containers"]
        assert "--model-control-mode=explicit" in server["args"], overlay
        assert "--load-model=tally_detector" in server["args"], overlay
        assert models["command"] == ["tally-models"]
        assert env_value(models, "TALLY_TRITON_URL") == "127.0.0.1:8001"  # its own pod's
        # The pod takes detector traffic once its Triton serves every model in use.
        assert models["readinessProbe"]["httpGet"]["path"] == "/readyz"
        backend = "onnxruntime" if overlay == "gpu" else "python"
        assert env_value(models, "TALLY_TRITON_BACKEND") == backend, overlay


def test_no_secret_values_in_the_manifests(objects: list[dict[str, Any]]) -> None:
    assert not [o for o in objects if o["kind"] == "Secret"]
    for obj in objects:
        if obj["kind"] == "ConfigMap":
            assert not [k for k in obj["data"] if SECRET_NAME.search(k)], obj["metadata"]["name"]
    for name, spec in pod_specs(objects):
        for container in containers(spec):
            for variable in container.get("env", []):
                if SECRET_NAME.search(variable["name"]):
                    # From a Secret, or built only of variables that are (Kubernetes' $(NAME)).
                    value = str(variable.get("value", ""))
                    assert "valueFrom" in variable or "$(" in value, (name, variable["name"])


def test_every_deployment_has_a_disruption_budget_and_the_orchestrator_two_replicas(
    objects: list[dict[str, Any]],
) -> None:
    budgets = {
        o["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"]
        for o in objects
        if o["kind"] == "PodDisruptionBudget"
    }
    deployments = [o for o in objects if o["kind"] == "Deployment"]
    assert {d["metadata"]["name"] for d in deployments} <= budgets
    assert _named(objects, "Deployment", "orchestrator")["spec"]["replicas"] >= 2


def test_network_is_denied_unless_allowed(objects: list[dict[str, Any]]) -> None:
    deny = _named(objects, "NetworkPolicy", "default-deny")
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    policies = {o["metadata"]["name"] for o in objects if o["kind"] == "NetworkPolicy"}
    for name, _ in pod_specs(objects):
        assert name in policies, f"{name} has no policy of its own"


def test_every_object_carries_the_recommended_labels(objects: list[dict[str, Any]]) -> None:
    for obj in objects:
        labels = obj["metadata"].get("labels", {})
        assert labels.get("app.kubernetes.io/part-of") == "tally", obj["metadata"]["name"]
        assert labels.get("app.kubernetes.io/managed-by") == "kustomize"
        assert labels.get("app.kubernetes.io/version") == "0.1.0"


def test_the_ingress_streams_events_and_limits_bodies_per_route(
    objects: list[dict[str, Any]],
) -> None:
    photos = _named(objects, "Ingress", "tally-photos")["metadata"]["annotations"]
    rest = _named(objects, "Ingress", "tally")["metadata"]["annotations"]
    assert photos["nginx.ingress.kubernetes.io/proxy-body-size"] == "512m"
    assert rest["nginx.ingress.kubernetes.io/proxy-body-size"] == "1m"
    assert rest["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    assert int(rest["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600


def test_detectors_scale_on_the_recorded_backlog_query(objects: list[dict[str, Any]]) -> None:
    rule = _named(objects, "PrometheusRule", "tally")
    recorded = {
        r["record"]: r["expr"] for g in rule["spec"]["groups"] for r in g["rules"] if "record" in r
    }
    for name in ("detector", "triton"):
        scaled = _named(objects, "ScaledObject", name)
        (trigger,) = scaled["spec"]["triggers"]
        assert trigger["type"] == "prometheus"
        assert trigger["metadata"]["query"] in recorded
        assert (
            scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"][
                "stabilizationWindowSeconds"
            ]
            >= 300
        )


def test_the_replica_formula() -> None:
    assert desired_replicas(0, 1800, 100, 1, 20) == 1  # idle: the minimum
    assert desired_replicas(1, 1800, 100, 1, 20) == 1
    assert desired_replicas(1801, 1800, 100, 1, 20) == 2
    assert desired_replicas(10**6, 1800, 100, 1, 20) == 20  # the maximum
    assert desired_replicas(50, 1800, 100, 0, 20) == 0  # below activation: stays at zero
    assert desired_replicas(150, 1800, 100, 0, 20) == 1


def test_the_grafana_dashboard_is_valid_and_its_queries_use_exported_names() -> None:
    dashboard = json.loads((K8S / "base" / "grafana-dashboard.json").read_text())
    assert dashboard["uid"] == "tally-overview"
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(exprs) >= 10
    assert any("tally:pending_slices:max" in e for e in exprs)
    assert any("tenant" in e for e in exprs)


def test_the_rules_pass_promtool(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool (Debian's prometheus package: make servers) is needed"
    rules = tmp_path / "tally.rules.yaml"
    rules.write_text(yaml.safe_dump(prometheus_rules(list(_rendered("gpu")))))
    checked = subprocess.run(
        [promtool, "check", "rules", str(rules)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 17 rules found" in checked.stdout, checked.stdout


def test_the_alerts_fire_when_they_should_and_only_then(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool (Debian's prometheus package: make servers) is needed"
    (tmp_path / "tally.rules.yaml").write_text(
        yaml.safe_dump(prometheus_rules(list(_rendered("gpu"))))
    )
    shutil.copy(Path(__file__).parent / "alerts.test.yaml", tmp_path)
    tested = subprocess.run(
        [promtool, "test", "rules", "alerts.test.yaml"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout, tested.stdout
