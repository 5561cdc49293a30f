"""The projection's Redis key layout: one name per key, the same whoever builds it."""

from __future__ import annotations

import uuid

from tally_contracts import projection


def test_each_key_has_its_documented_layout() -> None:
    assert projection.job_key("j1") == "job:j1"
    assert projection.job_log_key("j1") == "job:j1:log"
    assert projection.tombstone_key("j1") == "job:j1:deleted"
    assert projection.session_key("s1") == "session:s1"
    assert projection.session_order_key("s1") == "session:s1:order"
    assert projection.session_changes_key("s1") == "session:s1:changes"
    assert projection.session_events_key("s1") == "session:s1:events"
    assert projection.tenant_jobs_key("t1") == "tenant:t1:jobs"
    assert projection.READY_KEY == "projection:v2:ready"
    assert projection.job_key("j1").startswith(projection.JOB_KEY_PREFIX)


def test_a_uuid_and_its_text_name_the_same_key() -> None:
    job_id = uuid.uuid4()
    assert projection.job_key(job_id) == projection.job_key(str(job_id))
    assert projection.session_events_key(job_id) == f"session:{job_id}:events"


def test_the_script_key_lists_are_in_their_documented_order() -> None:
    assert projection.fold_keys("t1", "s1", "j1") == [
        "job:j1",
        "session:s1",
        "session:s1:order",
        "session:s1:events",
        "tenant:t1:jobs",
        "job:j1:log",
        "projection:v2:ready",
        "job:j1:deleted",
        "session:s1:changes",
    ]
    assert projection.announce_keys("s1", ["j1", "j2"]) == [
        "session:s1",
        "session:s1:events",
        "job:j1",
        "job:j2",
    ]
    assert projection.session_read_keys("s1") == [
        "projection:v2:ready",
        "session:s1",
        "session:s1:order",
        "session:s1:changes",
    ]


def test_an_order_member_sorts_jobs_by_time_then_id_as_bytes() -> None:
    a, b = "0b5c0000-0000-4000-8000-000000000000", "ffff0000-0000-4000-8000-000000000000"
    members = [
        projection.order_member(1_764_608_400.5, b),
        projection.order_member(1_764_608_400.5, a),
        projection.order_member(999.0, b),  # long before: a shorter number, still first
    ]
    assert sorted(members) == [members[2], members[1], members[0]]
    assert [projection.order_member_job(m) for m in members] == [b, a, b]
    assert members[1] == f"0001764608400500000:{a}"[3:]
