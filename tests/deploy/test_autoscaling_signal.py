"""The autoscaler's signal on a real Prometheus (Debian's), scraping the running local stack
under the names the ServiceMonitors and PodMonitor give its targets, with the PrometheusRule's
recording rules loaded. A backlog is uploaded while no detector runs, then a detector drains
it; all along, the ScaledObject's exact query is evaluated through Prometheus's HTTP API and
KEDA's replica formula applied to it: the count rises with the backlog and returns to the
minimum once it has drained."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from tests.deploy.k8s import desired_replicas, prometheus_rules, render
from tests.e2e.harness import Stack, final_state, local_stack
from tests.eventually import eventually

from tally_client.sdk import TallyClient
from tally_stack import free_port
from tally_synth import write_dataset

pytestmark = pytest.mark.e2e
BATCHES, PHOTOS_PER_BATCH = 3, 10
# Small slices with a large overlap: many slices per photo (165 for 2000×1500), so a backlog of
# thousands builds from photos that are quick to make.
PARAMS = {"slice_size": 256, "overlap": 0.5}


@pytest.fixture
def stack(database: str, tmp_path: Path) -> Iterator[Stack]:
    # No detector at first: the backlog builds; the test starts one to drain it. The backlog is
    # sampled every second (5 s by default).
    with local_stack(
        database, tmp_path / "stack", TALLY_STACK_DETECTORS="0", TALLY_BACKLOG_INTERVAL_S="1"
    ) as running:
        yield running


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def value(self, query: str) -> float | None:
        answer = httpx.get(f"{self.url}/api/v1/query", params={"query": query}, timeout=5)
        answer.raise_for_status()
        result = answer.json()["data"]["result"]
        return float(result[0]["value"][1]) if result else None

    def wait_ready(self, process: subprocess.Popen[bytes], timeout_s: float) -> None:
        """Until its /-/ready answers 200 (it is starting, or replaying its log, before)."""

        def ready() -> bool:
            assert process.poll() is None, "Prometheus exited; see prometheus.log"
            return httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200

        eventually(  # a transport error: not listening yet
            ready, timeout_s, every_s=0.2, ignoring=(httpx.TransportError,), what="Prometheus ready"
        )

    def wait(self, query: str, done: Any, timeout_s: float = 120) -> float:
        value = eventually(
            lambda: self.value(query),
            timeout_s,
            every_s=0.5,
            until=lambda value: value is not None and done(value),
            what=f"{query} met the condition",
        )
        assert value is not None
        return value


@pytest.fixture
def prometheus(stack: Stack, tmp_path: Path) -> Iterator[Prometheus]:
    binary = shutil.which("prometheus")
    assert binary, "Prometheus (Debian's package: make servers) is needed"
    config = stack.config
    rules = prometheus_rules(render("gpu"))
    for group in rules["groups"]:
        group["interval"] = "1s"  # 15 s in the cluster; the test's clock runs faster
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules))
    # The job and target labels the Prometheus Operator gives the PodMonitor's and the
    # ServiceMonitor's targets, with this stack's ports behind them.
    scrape = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": ["rules.yaml"],
        "scrape_configs": [
            {
                "job_name": "podMonitor/tally/tally-workers/0",
                "static_configs": [
                    {
                        "targets": [f"127.0.0.1:{config.probes['orchestrator']}"],
                        "labels": {"namespace": "tally", "pod": "orchestrator-0",
                                   "container": "orchestrator", "job": "tally/tally-workers"},
                    }
                ],
                "honor_labels": True,
            },
            {
                "job_name": "serviceMonitor/tally/tally-http/0",
                "static_configs": [
                    {
                        "targets": [f"127.0.0.1:{config.gateway_port}",
                                    f"127.0.0.1:{config.upload_port}"],
                        "labels": {"namespace": "tally", "job": "gateway"},
                    }
                ],
                "honor_labels": True,
            },
        ],
    }  # fmt: skip
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(scrape))
    port = free_port()
    with (tmp_path / "prometheus.log").open("wb") as log:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        try:
            server = Prometheus(f"http://127.0.0.1:{port}")
            server.wait_ready(process, 60)
            server.wait("up", lambda _: True, 60)
            yield server
        finally:
            process.terminate()
            process.wait(30)


def test_the_replica_count_follows_the_backlog_up_and_back_to_the_minimum(
    stack: Stack, prometheus: Prometheus, tmp_path: Path
) -> None:
    (scaled,) = [
        o
        for o in render("gpu")
        if o["kind"] == "ScaledObject" and o["metadata"]["name"] == "detector"
    ]
    (trigger,) = scaled["spec"]["triggers"]
    query = trigger["metadata"]["query"]
    threshold = float(trigger["metadata"]["threshold"])
    activation = float(trigger["metadata"]["activationThreshold"])
    lowest, highest = scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]

    def replicas(pending: float) -> int:
        return desired_replicas(pending, threshold, activation, lowest, highest)

    table: list[tuple[str, float, int]] = []
    prometheus.wait(query, lambda pending: pending == 0)
    table.append(("idle", 0.0, replicas(0)))
    photos = tmp_path / "photos"
    write_dataset(
        photos, count=BATCHES * PHOTOS_PER_BATCH, seed=77, width=2000, height=1500, workers=2
    )
    files = sorted(photos.glob("*.jpg"))
    with TallyClient(stack.url, stack.admin_key("tenant-scale")) as client:
        session = client.create_session("a backlog", PARAMS)
        previous = 0.0
        for batch in range(BATCHES):
            part = files[batch * PHOTOS_PER_BATCH : (batch + 1) * PHOTOS_PER_BATCH]
            assert len(client.upload(session, part)["jobs"]) == PHOTOS_PER_BATCH
            # Planned, sampled, scraped and recorded: the query sees the whole batch.
            expected = 165 * PHOTOS_PER_BATCH * (batch + 1)
            pending = prometheus.wait(query, lambda value, e=expected: value >= e)
            assert pending > previous
            previous = pending
            table.append((f"{(batch + 1) * PHOTOS_PER_BATCH} photos uploaded", pending,
                          replicas(pending)))  # fmt: skip

        detector = stack.start("detector", "ready (Triton at")
        try:
            assert detector.wait_ready(60)
            started = time.monotonic()
            seen = previous

            def sample() -> float | None:  # each half-threshold step down goes in the table
                nonlocal seen
                now = prometheus.value(query)
                if now is not None and now <= seen - threshold / 2:
                    table.append((f"draining, {time.monotonic() - started:.0f} s", now,
                                  replicas(now)))  # fmt: skip
                    seen = now
                return now

            eventually(
                sample,
                300,
                every_s=0.5,
                until=lambda now: now is not None and now <= 0,
                what="drained",
            )
            table.append((f"drained, {time.monotonic() - started:.0f} s", 0.0, replicas(0)))
            final = final_state(client, session, 60)
        finally:
            detector.kill()

    print("\n".join(f"{what:28} {pending:8.0f} {count:3d}" for what, pending, count in table))
    counts = [count for _, _, count in table]
    rising = counts[: BATCHES + 1]
    assert rising == sorted(rising), table
    assert rising[0] == lowest
    assert rising[-1] >= 3, table  # 4,950 slices at 1,800 per detector
    assert counts[-1] == lowest, table
    assert [j["status"] for j in final["jobs"]] == ["completed"] * BATCHES * PHOTOS_PER_BATCH
    assert prometheus.value("tally:pending_slices:max") == 0
