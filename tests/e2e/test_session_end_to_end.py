"""One session through all five services on the real local stack, started by the same launcher
as `make up`: upload → RabbitMQ → orchestrator → detector (Triton) → projector → gateway.

Watched at once by polling and by the SDK following the event stream, while Redis is wiped in
the middle of the run: neither may see an error or a wrong status."""

from __future__ import annotations

import io
import random
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tally_client.sdk import TallyClient, TallyError
from tally_contracts import projection as redis_keys
from tally_contracts.statuses import FINAL
from tally_inference import count_error
from tally_synth import write_dataset
from tests.e2e.harness import REDIS_URL, Stack, Worker, final_state, local_stack
from tests.eventually import eventually

pytestmark = pytest.mark.e2e
STATUS_ORDER = {"queued": 0, "processing": 1, "completed": 2, "failed": 2, "cancelled": 2}


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    directory = tmp_path_factory.mktemp("photos")
    truth = write_dataset(directory, count=3, seed=31_337, width=4000, height=3000, workers=2)
    return directory, {
        name: sum(1 for o in objects if o["label"] == "seedling") for name, objects in truth.items()
    }


@pytest.fixture
def stack(database: str, tmp_path: Path) -> Iterator[Stack]:
    with local_stack(database, tmp_path / "stack") as stack:
        yield stack


def test_a_session_goes_through_every_service_and_stays_private(
    stack: Stack, photos: tuple[Path, dict[str, int]]
) -> None:
    directory, true_counts = photos
    key_a, key_b = stack.admin_key("tenant-a"), stack.admin_key("tenant-b")
    with (
        TallyClient(stack.url, key_a) as a,
        TallyClient(stack.url, key_a) as a_stream,
        TallyClient(stack.url, key_b) as b,
    ):
        session = a.create_session("e2e")
        files = sorted(directory.glob("*.jpg"))
        corrupt = directory / "corrupt.jpg"
        corrupt.write_bytes(files[0].read_bytes()[:5000])
        answer = a.upload(session, [*files, corrupt])
        assert [j["filename"] for j in answer["jobs"]] == [f.name for f in files]
        assert [(r["filename"], r["code"]) for r in answer["rejected"]] == [
            ("corrupt.jpg", "corrupt_image")
        ]

        only_bad = a.upload(session, [corrupt])
        assert only_bad["jobs"] == []

        followed: list[dict[str, Any]] = []
        follower = threading.Thread(target=lambda: followed.extend(a_stream.follow(session)))
        follower.start()

        seen: dict[str, list[tuple[str, int]]] = {j["job_id"]: [] for j in answer["jobs"]}
        errors: list[TallyError] = []
        wiped_at: int | None = None

        def poll() -> dict[str, Any] | None:
            """The session now (each poll's view is kept); Redis is wiped once, mid-run."""
            nonlocal wiped_at
            try:
                state = a.jobs(session)
            except TallyError as error:
                errors.append(error)
                return None
            for job in state["jobs"]:
                seen[job["job_id"]].append((job["status"], job["processed"]))
            done = all(j["status"] == "completed" for j in state["jobs"])
            if not done and wiped_at is None and any(j["processed"] for j in state["jobs"]):
                redis.Redis.from_url(REDIS_URL).flushdb()  # Redis loses everything mid-run
                wiped_at = len(seen[state["jobs"][0]["job_id"]])
            return state

        state = eventually(
            poll,
            300,
            every_s=0.3,
            until=lambda state: (
                state is not None and all(j["status"] == "completed" for j in state["jobs"])
            ),
            what="every job completed",
        )
        assert state is not None
        follower.join(timeout=60)
        assert errors == []
        assert wiped_at is not None
        assert wiped_at < len(next(iter(seen.values()))) - 2  # polled during and after too
        for history in seen.values():
            ranks = [STATUS_ORDER[status] for status, _ in history]
            assert ranks == sorted(ranks), history  # never backwards
            processed = [p for _, p in history]
            assert processed == sorted(processed), history  # progress only rises
            assert history[-1] == ("completed", 88)
        statuses_seen = {status for h in seen.values() for status, _ in h}
        assert {"queued", "processing", "completed"} <= statuses_seen

        # The stream, across the wipe: every job's statuses in order, ending completed.
        assert not follower.is_alive()
        streamed: dict[str, list[str]] = {}
        for update in followed:
            for job in update["jobs"]:
                streamed.setdefault(job["job_id"], []).append(job["status"])
        assert set(streamed) == set(seen)
        for statuses in streamed.values():
            ranks = [STATUS_ORDER[status] for status in statuses]
            assert ranks == sorted(ranks), statuses
            assert statuses[-1] == "completed"
        assert followed[-1]["summary"]["completed"] == len(files)
        # And the projection was rebuilt: Redis answers again, whole.
        projected = redis.Redis.from_url(REDIS_URL)
        assert projected.exists(redis_keys.READY_KEY)
        for job in state["jobs"]:
            assert projected.hget(redis_keys.job_key(job["job_id"]), "status") == b"completed"

        for job in state["jobs"]:
            result = a.result(job["job_id"])
            counted = result["counts"]["seedling"]
            assert count_error(counted, true_counts[job["filename"]]) <= 0.08
            assert all(0 <= d["bbox"][0] < d["bbox"][2] <= 4000 for d in result["detections"])

        with pytest.raises(TallyError) as refused:
            b.jobs(session)
        assert refused.value.status == 404
        with pytest.raises(TallyError) as refused:
            b.result(state["jobs"][0]["job_id"])
        assert refused.value.status == 404
        for path in (f"/v1/sessions/{session}", f"/v1/jobs/{state['jobs'][0]['job_id']}"):
            other = httpx.get(f"{stack.url}{path}", headers={"Authorization": f"Bearer {key_b}"})
            assert other.status_code == 404, path
        other = httpx.get(
            f"{stack.url}/v1/jobs/{state['jobs'][0]['job_id']}",
            headers={"Authorization": f"Bearer {key_b}"},
        )
        assert other.status_code == 404
        bad_only = httpx.post(
            f"{stack.url}/v1/sessions/{session}/photos",
            files=[("file", ("bad.jpg", io.BytesIO(corrupt.read_bytes()), "image/jpeg"))],
            headers={"Authorization": f"Bearer {key_a}"},
        )
        assert bad_only.status_code == 422
        assert bad_only.json()["rejected"][0]["code"] == "corrupt_image"


def test_cancelling_a_running_session_stops_its_work_within_seconds(
    stack: Stack, tmp_path: Path
) -> None:
    """20 photos; once the first has finished, the session is cancelled: within 5 s every job is
    final (done before, or cancelled), and no detector starts a chunk of a cancelled job after
    the request (one already running stops between batches)."""
    directory = tmp_path / "twenty"
    write_dataset(directory, count=20, seed=4_242, width=2000, height=1500, workers=2)
    with TallyClient(stack.url, stack.admin_key("tenant-c")) as client:
        session = client.create_session("to cancel")
        answer = client.upload(session, sorted(directory.glob("*.jpg")))
        assert len(answer["jobs"]) == 20
        eventually(
            lambda: client.jobs(session)["summary"],
            120,
            every_s=0.2,
            until=lambda summary: summary["completed"],
            what="a job completed",
        )
        requested = time.time()
        accepted = client.cancel_session(session)
        assert accepted["status"] == "cancelling"
        state = eventually(
            lambda: client.jobs(session),
            5,
            every_s=0.1,
            until=lambda state: all(
                j["status"] in ("completed", "cancelled") for j in state["jobs"]
            ),
            what="every job completed or cancelled",
        )
        took = time.time() - requested
        statuses = [j["status"] for j in state["jobs"]]
        assert set(statuses) == {"completed", "cancelled"}, statuses
        assert took <= 5.0

        time.sleep(1.0)  # anything a detector still did would show by now
        for job in state["jobs"]:
            if job["status"] != "cancelled":
                continue
            detail = client.job(job["job_id"])
            assert detail["status"] == "cancelled"
            starts = [
                datetime.fromisoformat(entry["at"]).timestamp()
                for entry in detail["logs"]
                if entry["event"] == "started"
            ]
            # Allow for the clocks of two processes and the marker landing a moment after 202.
            assert all(at <= requested + 0.5 for at in starts), (job["filename"], starts)
        assert client.jobs(session)["summary"]["cancelled"] == statuses.count("cancelled")


@pytest.mark.reliability
def test_detectors_killed_20_times_lose_nothing_and_count_nothing_twice(
    stack: Stack, tmp_path: Path
) -> None:
    """30 photos run fault-free, then twice over (60 jobs) while four extra detectors are
    killed with SIGKILL 20 times at random moments (each restarted at once; half of the kills
    wait for a detector that is consuming, so work is cut mid-chunk): every job completes, with
    exactly the counts of the fault-free run and every slice counted once. (Twice over: on an
    idle machine 30 photos were done after 14 of the 20 kills, each restarted detector taking
    seconds to be ready.)"""
    directory = tmp_path / "thirty"
    write_dataset(directory, count=30, seed=9_001, width=3200, height=2400, workers=2)
    files = sorted(directory.glob("*.jpg"))
    rng = random.Random(20261124)

    def detector(n: int) -> Worker:
        return stack.start("detector", "ready (Triton at", TALLY_DETECTOR_ID=f"extra-{n}")

    with TallyClient(stack.url, stack.admin_key("tenant-r")) as client:
        clean_session = client.create_session("fault-free")
        client.upload(clean_session, files)
        clean = {
            j["filename"]: j["result"]["counts"]
            for j in final_state(client, clean_session, 300)["jobs"]
        }

        extra = [detector(n) for n in range(4)]
        session = client.create_session("under fire")
        client.upload(session, files)
        client.upload(session, files)
        kills = 0
        try:
            while kills < 20:
                time.sleep(rng.uniform(0.05, 0.4))
                state = client.jobs(session)
                assert not all(j["status"] in FINAL for j in state["jobs"]), (
                    f"the session finished after only {kills} kills"
                )
                # Every other kill waits for a detector that is consuming (so most likely holds
                # a chunk); the others hit whichever comes, starting up or not.
                n = rng.randrange(len(extra))
                if kills % 2 == 0 and not extra[n].is_ready():
                    continue
                extra[n].kill()
                extra[n] = detector(n)
                kills += 1
            final = final_state(client, session, 300)
            # Kills that landed mid-chunk: the chunk was started again after its redelivery.
            restarted = 0
            for job in final["jobs"]:
                started = [
                    e["message"]
                    for e in client.job(job["job_id"])["logs"]
                    if e["event"] == "started"
                ]
                restarted += len(started) - len(set(started))
        finally:
            for worker in extra:
                worker.kill()

    assert [j["status"] for j in final["jobs"]] == ["completed"] * 2 * len(files)
    assert [j["result"]["counts"] for j in final["jobs"]] == [
        clean[j["filename"]] for j in final["jobs"]
    ]
    assert {j["filename"] for j in final["jobs"]} == set(clean)
    assert all(j["processed"] == j["total"] for j in final["jobs"])  # each slice once
    assert restarted > 0, "no kill interrupted a chunk: the test proved nothing"
    print(f"{kills} kills, {restarted} chunks started again after a kill")
