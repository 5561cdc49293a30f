"""Webhooks on the whole local stack: a session of three photos through every service, and a
receiver on 127.0.0.1 (allowed by the stack's TALLY_WEBHOOK_ALLOW_HOSTS) that gets a signed
`job.completed` for each photo and one `session.completed`, checked by the test's own
implementation of the Standard Webhooks signature."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tally_client.sdk import TallyClient
from tally_synth import write_dataset
from tests.e2e.harness import Stack, final_state, local_stack
from tests.webhook_receiver import Receiver, signatures_valid

pytestmark = pytest.mark.e2e


@pytest.fixture
def stack(database: str, tmp_path: Path) -> Iterator[Stack]:
    with local_stack(database, tmp_path / "stack") as stack:
        yield stack


def test_a_three_photo_session_sends_each_job_completed_and_one_session_completed(
    stack: Stack, tmp_path: Path
) -> None:
    write_dataset(tmp_path / "photos", count=3, seed=4_242, width=1600, height=1200, workers=2)
    photos = sorted((tmp_path / "photos").glob("*.jpg"))
    key = stack.admin_key("integrator")
    auth = {"Authorization": f"Bearer {key}"}
    with Receiver() as receiver, TallyClient(stack.url, key) as client:
        registered = httpx.post(
            f"{stack.url}/v1/webhooks",
            json={
                "url": receiver.url(),
                "events": ["job.completed", "session.completed"],
                "description": "e2e",
            },
            headers=auth,
        )
        assert registered.status_code == 201, registered.text
        secret = registered.json()["secret"]
        session = client.create_session("webhooks")
        jobs = client.upload(session, photos)["jobs"]
        state = final_state(client, session, 300)
        assert {j["status"] for j in state["jobs"]} == {"completed"}
        got = receiver.wait_for(4, timeout_s=60)
        results = {j["job_id"]: client.result(j["job_id"]) for j in jobs}
        deliveries = httpx.get(
            f"{stack.url}/v1/webhooks/{registered.json()['webhook_id']}/deliveries", headers=auth
        ).json()["deliveries"]

    assert all(signatures_valid(secret, r) == [True] for r in got)
    types = Counter(r.event["type"] for r in got)
    assert types == {"job.completed": 3, "session.completed": 1}
    completed = {
        r.event["data"]["job_id"]: r.event["data"]
        for r in got
        if r.event["type"] == "job.completed"
    }
    assert set(completed) == set(results)
    for job_id, data in completed.items():
        assert data["counts"] == results[job_id]["counts"]
        assert data["detections"] == len(results[job_id]["detections"])
        assert data["session_id"] == session
    (session_event,) = [r.event for r in got if r.event["type"] == "session.completed"]
    assert session_event["data"]["summary"] == {
        "total": 3,
        "completed": 3,
        "failed": 0,
        "cancelled": 0,
    }
    totals: Counter[str] = Counter()
    for result in results.values():
        totals.update(result["counts"])
    assert session_event["data"]["counts"] == dict(totals)
    assert len({r.headers["webhook-id"] for r in got}) == 4
    assert sorted(d["status"] for d in deliveries) == ["succeeded"] * 4
