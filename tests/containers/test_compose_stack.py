"""The whole stack from docker-compose.yml, as `make compose-up` runs it: Tally's images, the
servers' images, the edge published on 127.0.0.1 only. Driven from the host through the edge,
as a customer would, and operated as an operator would (`tally admin` in a container)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tally_client.sdk import StreamEvent, TallyClient
from tally_inference import count_error
from tally_synth import write_dataset
from tests.containers.harness import IMAGES, LONG_RUNNING, ComposeStack
from tests.e2e.harness import final_state
from tests.eventually import eventually

pytestmark = pytest.mark.containers


def _photos(directory: Path, count: int, seed: int) -> dict[str, int]:
    truth = write_dataset(directory, count=count, seed=seed, width=4000, height=3000, workers=2)
    return {name: sum(o["label"] == "seedling" for o in objects) for name, objects in truth.items()}


def _cli(stack: ComposeStack, key: str, *args: str) -> str:
    env = {"TALLY_URL": stack.url, "TALLY_API_KEY": key, "COLUMNS": "200", "PATH": "/usr/bin"}
    done = subprocess.run(
        [sys.executable, "-m", "tally_client.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return done.stdout


def _stream_id(event: StreamEvent) -> tuple[int, int]:
    millis, _, sequence = event.id.partition("-")
    return int(millis), int(sequence or 0)


def _assert_every_slice_counted_once(state: dict[str, Any], truth: dict[str, int]) -> None:
    assert [j["status"] for j in state["jobs"]] == ["completed"] * len(truth), state["jobs"]
    assert all(j["processed"] == j["total"] > 0 for j in state["jobs"]), state["jobs"]


def _assert_counts(client: TallyClient, state: dict[str, Any], truth: dict[str, int]) -> None:
    for job in state["jobs"]:
        counted = client.result(job["job_id"])["counts"]["seedling"]
        assert count_error(counted, truth[job["filename"]]) <= 0.08, (job["filename"], counted)


def _wait_for_progress(client: TallyClient, session: str, timeout_s: float = 120) -> None:
    jobs = eventually(
        lambda: client.jobs(session)["jobs"],
        timeout_s,
        every_s=0.2,
        until=lambda jobs: any(j["processed"] for j in jobs),
        what="a slice processed",
    )
    assert not all(j["status"] == "completed" for j in jobs), "finished before the fault"


def _finished_after(state: dict[str, Any], moment: float) -> list[str]:
    """The jobs that completed after `moment` (epoch seconds): the session spanned the fault."""
    return [
        j["filename"]
        for j in state["jobs"]
        if datetime.fromisoformat(j["completed_at"]).timestamp() > moment
    ]


def test_containers_run_as_non_root_and_tallys_on_a_read_only_root(stack: ComposeStack) -> None:
    running = {c.labels["com.docker.compose.service"]: c for c in stack.containers()}
    assert set(running) == LONG_RUNNING
    for service, container in running.items():
        code, out = container.exec_run(["id", "-u"])
        assert code == 0, (service, out)
        assert isinstance(out, bytes)
        assert out.decode().strip() != "0", service
    for service in (
        "upload", "gateway", "orchestrator", "projector", "webhooks", "models", "detector",
        "triton", "edge",
    ):  # fmt: skip
        code, _ = running[service].exec_run(["sh", "-c", "touch /written"])
        assert code != 0, f"{service} could write its root filesystem"


def test_only_the_edge_is_published_and_only_on_loopback(stack: ComposeStack) -> None:
    published = {
        c.labels["com.docker.compose.service"]: [
            (binding["HostIp"], binding["HostPort"])
            for bindings in (c.attrs["NetworkSettings"]["Ports"] or {}).values()
            for binding in bindings or []
        ]
        for c in stack.containers()
    }
    assert {service for service, ports in published.items() if ports} == {"edge"}
    assert published["edge"] == [("127.0.0.1", str(stack.edge_port))]


def test_a_session_through_the_compose_edge_completes_streams_and_stays_private(
    stack: ComposeStack, tmp_path: Path
) -> None:
    """Two tenants made by `tally admin` in the admin container; A uploads 4 photos with the
    CLI; one stream follows it uninterrupted, another is cut after a few events and resumed
    with Last-Event-ID: it gets exactly the events the first got after its own start, none
    twice; every job completes with the model's counts; B sees none of it."""
    truth = _photos(tmp_path / "photos", count=4, seed=1_100)
    key_a, key_b = stack.create_tenant("compose-a"), stack.create_tenant("compose-b")
    out = _cli(stack, key_a, "upload", str(tmp_path / "photos"))
    found = re.search(r"tally status ([0-9a-f-]{36})", out)
    assert found, out
    session = found[1]

    with (
        TallyClient(stack.url, key_a) as a,
        TallyClient(stack.url, key_a) as cut,
    ):
        whole: list[StreamEvent] = []
        started = threading.Event()

        def follow_whole() -> None:
            for event in a.events(session):
                whole.append(event)
                started.set()

        follower = threading.Thread(target=follow_whole)
        follower.start()
        assert started.wait(30), "no snapshot on the uninterrupted stream"

        before: list[StreamEvent] = []
        stream = cut.events(session)
        for event in stream:
            before.append(event)
            if len(before) == 4 or event.event == "done":
                break
        stream.close()  # the client drops the connection
        time.sleep(1.5)  # events go on meanwhile
        after: list[StreamEvent] = []
        if before[-1].event != "done":
            after = list(cut.events(session, last_event_id=before[-1].id))
        follower.join(120)
        assert not follower.is_alive()

        assert before[0].event == "snapshot"
        assert not after or after[0].event != "snapshot"  # resumed, not started over
        resumed = before + after
        ids = [_stream_id(e) for e in resumed]
        assert ids == sorted(set(ids)), "an event repeated or out of order"
        start = _stream_id(before[0])
        expected = [e for e in whole if e.event != "snapshot" and _stream_id(e) > start]
        got = resumed[1:]
        assert [(e.id, e.event) for e in got] == [(e.id, e.event) for e in expected]
        assert [e.data for e in got] == [e.data for e in expected]
        assert got[-1].event == "done"

        state = final_state(a, session, 300)
        _assert_every_slice_counted_once(state, truth)
        _assert_counts(a, state, truth)
        table = _cli(stack, key_a, "status", session)
        assert table.count("completed") == 4, table

        job = state["jobs"][0]["job_id"]
        for path in (
            f"/v1/sessions/{session}",
            f"/v1/sessions/{session}/jobs",
            f"/v1/sessions/{session}/events",
            f"/v1/jobs/{job}",
            f"/v1/jobs/{job}/result",
        ):
            answer = httpx.get(f"{stack.url}{path}", headers={"Authorization": f"Bearer {key_b}"})
            assert answer.status_code == 404, path
            assert answer.json()["error"]["code"] == "not_found", path


def test_a_detector_container_killed_mid_session_loses_nothing(
    stack: ComposeStack, tmp_path: Path
) -> None:
    """Two detectors; one is killed (SIGKILL) while the session runs: the other finishes its
    chunks, every slice is counted once and the counts are right."""
    truth = _photos(tmp_path / "photos", count=6, seed=2_200)
    detectors = stack.containers("detector")
    assert len(detectors) == 2
    with TallyClient(stack.url, stack.create_tenant("compose-kill")) as client:
        session = client.create_session("a detector dies")
        assert len(client.upload(session, sorted((tmp_path / "photos").glob("*.jpg")))["jobs"]) == 6
        _wait_for_progress(client, session)
        detectors[0].kill()
        killed = time.time()
        state = final_state(client, session, 420)
        assert _finished_after(state, killed)
        _assert_every_slice_counted_once(state, truth)
        _assert_counts(client, state, truth)
    stack.compose("up", "-d", "--scale", "detector=2", "--no-recreate")
    stack.wait_healthy()


def test_a_session_completes_through_a_broker_restart(stack: ComposeStack, tmp_path: Path) -> None:
    """`docker compose restart rabbitmq` mid-session: the services reconnect by themselves and
    the session completes, each slice counted once."""
    truth = _photos(tmp_path / "photos", count=8, seed=3_300)
    with TallyClient(stack.url, stack.create_tenant("compose-broker")) as client:
        session = client.create_session("through a broker restart")
        assert len(client.upload(session, sorted((tmp_path / "photos").glob("*.jpg")))["jobs"]) == 8
        _wait_for_progress(client, session)
        stack.compose("restart", "rabbitmq")
        restarted = time.time()
        state = final_state(client, session, 420)
        assert _finished_after(state, restarted)  # work went on through the restarted broker
        _assert_every_slice_counted_once(state, truth)
        _assert_counts(client, state, truth)


def test_the_edge_keeps_probes_metrics_and_api_docs_inside(stack: ComposeStack) -> None:
    assert httpx.get(f"{stack.url}/healthz").status_code == 200  # for load balancers
    for path in ("/readyz", "/metrics", "/docs", "/openapi.json"):
        answer = httpx.get(f"{stack.url}{path}")
        assert answer.status_code == 404, path
        assert answer.json()["error"]["code"] == "not_found", path
    (gateway,) = stack.containers("gateway")
    code, metrics = gateway.exec_run(["tally-healthcheck"])
    assert code == 0, metrics  # inside, /readyz answers


def test_a_gateway_gone_is_a_json_503_at_the_edge_and_found_again_at_its_new_address(
    stack: ComposeStack,
) -> None:
    """The gateway stops: the edge answers in the API's envelope. Another container takes its
    address meanwhile, so the gateway comes back elsewhere: the edge finds it (it asks compose's
    DNS at request time) without being restarted."""
    key = stack.create_tenant("compose-edge")
    headers = {"Authorization": f"Bearer {key}"}
    (gateway,) = stack.containers("gateway")
    (network,) = gateway.attrs["NetworkSettings"]["Networks"]
    before = gateway.attrs["NetworkSettings"]["Networks"][network]["IPAddress"]
    gateway.stop(timeout=30)
    # Docker gives a new container the lowest free address: take them until the gateway's is.
    squatters = []
    try:
        for _ in range(30):
            squatter = stack.client.containers.run(
                IMAGES[0], ["sleep", "300"], entrypoint=[], network=network, detach=True
            )
            squatters.append(squatter)
            squatter.reload()
            if squatter.attrs["NetworkSettings"]["Networks"][network]["IPAddress"] == before:
                break
        else:
            raise AssertionError(f"no container was given {before}")
        answer = httpx.get(f"{stack.url}/v1/jobs", headers=headers)
        assert answer.status_code == 503
        assert answer.json()["error"]["code"] == "unavailable"
        assert answer.headers["retry-after"] == "5"
        gateway.start()
        stack.wait_healthy()
        gateway.reload()
        assert gateway.attrs["NetworkSettings"]["Networks"][network]["IPAddress"] != before
        eventually(
            lambda: httpx.get(f"{stack.url}/v1/jobs", headers=headers).status_code,
            30,
            every_s=0.5,
            until=lambda status: status == 200,
            what="the edge answers 200",
        )
    finally:
        for squatter in squatters:
            squatter.remove(force=True)


def test_the_faults_parked_nothing_as_the_admin_container_shows(stack: ComposeStack) -> None:
    """An operator reads the dead-letter queues with `tally admin` in the admin container:
    neither the killed detector nor the broker restart left a message there."""
    assert json.loads(stack.admin("dlq", "list", "--json")) == []


def test_down_with_volumes_leaves_nothing_of_the_project(stack: ComposeStack) -> None:
    assert stack.leftovers()["volumes"]  # the database's and the broker's, while it runs
    stack.down()
    assert stack.leftovers() == {"containers": [], "networks": [], "volumes": []}
