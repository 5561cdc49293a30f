"""docker-compose.yml, read as data (no Docker needed): it is valid Compose (the specification's
schema, what Compose v2 checks) and keeps to what Debian's docker-compose 1.29 reads too; only
the edge is published, on loopback by default; secrets come from .env, never from the file."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tally_detector.config import Settings as DetectorSettings

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO / "deploy" / "schemas" / "compose-spec.json"
# Keys Compose v2 reads and v1.29 rejects or ignores: the file must not need them.
V2_ONLY_TOP = {"name", "include", "models"}
V2_ONLY_SERVICE = {"develop", "attach", "post_start", "pre_stop", "gpus", "models", "provider"}
V2_ONLY_BUILD = {"secrets", "additional_contexts", "ssh", "platforms", "tags", "privileged"}
TALLY_SERVICES = {
    "upload", "gateway", "orchestrator", "projector", "webhooks", "models", "detector"
}  # fmt: skip
# What each of them waits for besides the migration (the detector waits for no migration).
SERVERS = {"webhooks": (), "models": ("s3",)}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return loaded


def _durations_s(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text))


def test_the_file_is_valid_against_the_compose_specification(compose: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA.read_text())  # draft 7, which its "$schema" names without "#"
    jsonschema.Draft7Validator(schema).validate(compose)


def test_the_file_needs_nothing_that_compose_1_29_lacks(compose: dict[str, Any]) -> None:
    assert not V2_ONLY_TOP & set(compose)
    for name, service in compose["services"].items():
        assert not V2_ONLY_SERVICE & set(service), name
        build = service.get("build", {})
        assert not V2_ONLY_BUILD & set(build if isinstance(build, dict) else {}), name
        assert "start_interval" not in service.get("healthcheck", {}), name
        for condition in (service.get("depends_on") or {}).values():
            assert set(condition) == {"condition"}, name  # no `required` / `restart` (v2)


def test_only_the_edge_is_published_and_by_default_on_loopback(compose: dict[str, Any]) -> None:
    published = {name for name, s in compose["services"].items() if s.get("ports")}
    assert published == {"edge"}
    (port,) = compose["services"]["edge"]["ports"]
    assert port.startswith("${TALLY_COMPOSE_ADDRESS:-127.0.0.1}:")


def test_tally_services_start_after_the_migration_and_their_servers(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    for name in TALLY_SERVICES - {"detector"}:
        waits = services[name]["depends_on"]
        assert waits["migrate"] == {"condition": "service_completed_successfully"}, name
        # tally-webhooks needs only PostgreSQL (which the migration waited for), tally-models
        # the object store too (and Triton, which it waits for itself: it may be either one).
        for server in SERVERS.get(name, ("rabbitmq", "redis", "s3")):
            assert waits[server] == {"condition": "service_healthy"}, (name, server)
    assert set(services["webhooks"]["depends_on"]) == {"migrate"}
    assert set(services["models"]["depends_on"]) == {"migrate", "s3"}
    assert services["migrate"]["depends_on"]["postgres"] == {"condition": "service_healthy"}
    for server in ("rabbitmq", "postgres", "redis", "s3", "triton", "triton-gpu"):
        assert services[server]["healthcheck"]["test"], server  # the official images have none


def test_tally_containers_run_read_only_without_capabilities(compose: dict[str, Any]) -> None:
    for name in (*TALLY_SERVICES, "migrate", "admin", "triton", "edge"):
        service = compose["services"][name]
        assert service["read_only"] is True, name
        assert service["tmpfs"] == ["/tmp"], name
        assert service["cap_drop"] == ["ALL"], name


def test_detectors_scale_and_finish_their_chunk_before_they_are_killed(
    compose: dict[str, Any],
) -> None:
    detector = compose["services"]["detector"]
    assert not {"container_name", "ports", "hostname"} & set(detector)  # --scale detector=N
    grace = DetectorSettings.model_fields["shutdown_grace_s"].default
    assert _durations_s(detector["stop_grace_period"]) > grace


def test_secrets_come_from_the_env_file_and_the_example_holds_none(
    compose: dict[str, Any],
) -> None:
    text = (REPO / "docker-compose.yml").read_text()
    required = set(re.findall(r"\$\{([A-Z0-9_]+):\?", text))
    assert {"POSTGRES_PASSWORD", "RABBITMQ_PASSWORD", "REDIS_PASSWORD"} <= required
    example = dict(
        line.split("=", 1)
        for line in (REPO / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert required <= set(example)
    secrets = {k for k in required if k != "S3_ACCESS_KEY_ID"}
    assert {example[k] for k in secrets} == {"CHANGE_ME"}
    for value in compose["x-tally-env"].values():
        assert not re.search(r"://[^:/]+:[^$@]+@", str(value)), value  # no literal password


def test_gpu_triton_serves_the_gpu_repository_with_nvidia_devices(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    gpu, cpu = services["triton-gpu"], services["triton"]
    assert (gpu["profiles"], cpu["profiles"]) == (["gpu"], ["cpu"])
    assert "./deploy/triton/gpu:/models:ro" in gpu["volumes"]
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert (device["driver"], device["capabilities"]) == ("nvidia", ["gpu"])
    assert gpu["networks"]["default"]["aliases"] == ["triton"]  # detectors call triton:8001
