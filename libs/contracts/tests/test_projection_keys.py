"""The projection's Redis key layout: one name per key, the same whoever builds it."""

from __future__ import annotations

import uuid

from tally_contracts import projection


def test_each_key_has_its_documented_layout() -> None:
    assert projection.job_key("j1") == "job:j1"
    assert projection.job_log_key("j1") == "job:j1:log"
    assert projection.tombstone_key("j1") == "job:j1:deleted"
    assert projection.session_key("s1") == "session:s1"
    assert projection.session_jobs_key("s1") == "session:s1:jobs"
    assert projection.session_events_key("s1") == "session:s1:events"
    assert projection.tenant_jobs_key("t1") == "tenant:t1:jobs"
    assert projection.READY_KEY == "projection:ready"
    assert projection.job_key("j1").startswith(projection.JOB_KEY_PREFIX)


def test_a_uuid_and_its_text_name_the_same_key() -> None:
    job_id = uuid.uuid4()
    assert projection.job_key(job_id) == projection.job_key(str(job_id))
    assert projection.session_events_key(job_id) == f"session:{job_id}:events"


def test_the_script_key_lists_are_in_their_documented_order() -> None:
    assert projection.fold_keys("t1", "s1", "j1") == [
        "job:j1",
        "session:s1",
        "session:s1:jobs",
        "session:s1:events",
        "tenant:t1:jobs",
        "job:j1:log",
        "projection:ready",
        "job:j1:deleted",
    ]
    assert projection.announce_keys("s1", ["j1", "j2"]) == [
        "session:s1",
        "session:s1:events",
        "job:j1",
        "job:j2",
    ]
    assert projection.session_read_keys("s1") == [
        "projection:ready",
        "session:s1",
        "session:s1:jobs",
    ]
