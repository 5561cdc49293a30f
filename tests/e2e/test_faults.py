"""Tally under faults and load, on the real local stack: a noisy tenant, a broker restart, a
connection cut silently, a photo that kills the detector process. Marked `reliability`: slow;
CI runs them too."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from tally_client.sdk import TallyClient
from tally_synth import write_dataset
from tests.e2e.harness import Stack, final_state, local_stack

pytestmark = [pytest.mark.e2e, pytest.mark.reliability]


@pytest.fixture
def stack(database: str, tmp_path: Path) -> Iterator[Stack]:
    with local_stack(database, tmp_path / "stack") as stack:
        yield stack


def _at(stamp: str | None) -> float:
    assert stamp is not None
    return datetime.fromisoformat(stamp).timestamp()


def test_a_small_tenant_starts_while_a_large_backlog_waits(stack: Stack, tmp_path: Path) -> None:
    """Tenant A queues 200 photos; once they flow, tenant B uploads 3. B's photos all start
    before A has finished more than a few: the detectors' queue holds only `window` chunks
    (2 per detector, one detector here) and the slots that free up go to A and B in turn, so A
    finishes at most window + 2 × (3 − 1) + 1 = 7 photos between B's upload and B's last
    start (one chunk per photo here), where first-come-first-served would finish all of A's."""
    big, small = tmp_path / "big", tmp_path / "small"
    write_dataset(big, count=200, seed=77, width=512, height=512, workers=2)
    write_dataset(small, count=3, seed=78, width=512, height=512, workers=2)
    with (
        TallyClient(stack.url, stack.admin_key("tenant-a")) as a,
        TallyClient(stack.url, stack.admin_key("tenant-b")) as b,
    ):
        a_session = a.create_session("backlog")
        files = sorted(big.glob("*.jpg"))
        for start in range(0, len(files), 100):
            assert len(a.upload(a_session, files[start : start + 100])["jobs"]) == 100
        deadline = time.monotonic() + 120
        while a.jobs(a_session)["summary"]["completed"] < 3:  # A's backlog is flowing
            assert time.monotonic() < deadline, "tenant A's photos do not start"
            time.sleep(0.2)

        uploaded_at = time.time()
        b_session = b.create_session("three")
        assert len(b.upload(b_session, sorted(small.glob("*.jpg")))["jobs"]) == 3
        b_state = final_state(b, b_session, 120)
        a.cancel_session(a_session)
        a_state = final_state(a, a_session, 60)

    assert [j["status"] for j in b_state["jobs"]] == ["completed"] * 3
    b_started = max(_at(j["started_at"]) for j in b_state["jobs"])
    a_done = sorted(_at(j["completed_at"]) for j in a_state["jobs"] if j["status"] == "completed")
    a_before = sum(t <= uploaded_at for t in a_done)
    a_between = sum(uploaded_at < t <= b_started for t in a_done)
    print(
        f"B's 3 photos all started {b_started - uploaded_at:.1f} s after their upload; "
        f"meanwhile A finished {a_between} photos (A had {len(files) - a_before} left)"
    )
    assert a_between <= 7
    assert len(files) - a_before > 150  # A's backlog was real: it had not drained
