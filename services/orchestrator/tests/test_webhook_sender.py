"""The sender's pure parts: the signature, the retry schedule, Retry-After."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime

import pytest

from tally_contracts.webhooks import EventType
from tally_orchestrator._webhook_events import body, event_id
from tally_orchestrator._webhook_sender import Schedule, retry_after_s, signature

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def _expected(secret: str, content: bytes) -> str:
    """The specification's scheme, written out here on its own."""
    key = base64.b64decode(secret.split("_", 1)[1])
    return "v1," + base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()


def test_the_signature_is_hmac_sha256_of_id_timestamp_and_body() -> None:
    sent = b'{"type":"job.completed","timestamp":"2026-12-01T12:00:00+00:00","data":{}}'
    header = signature([SECRET], "msg_p5jXN8AQM9LWM0D4loKWxJek", 1674087231, sent)
    content = b"msg_p5jXN8AQM9LWM0D4loKWxJek.1674087231." + sent
    assert header == _expected(SECRET, content)


def test_every_valid_secret_signs_space_separated() -> None:
    other = "whsec_" + base64.b64encode(b"k" * 32).decode()
    header = signature([SECRET, other], "msg_1", 1, b"{}")
    assert header.split(" ") == [_expected(SECRET, b"msg_1.1.{}"), _expected(other, b"msg_1.1.{}")]


def test_event_ids_are_unique_and_have_no_dot() -> None:
    ids = {event_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(i.startswith("msg_") and "." not in i for i in ids)


def test_an_event_body_is_compact_json_of_type_timestamp_and_data() -> None:
    at = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    sent = body(EventType.JOB_COMPLETED, at, {"job_id": "j", "filename": "é.jpg"})
    assert (
        sent
        == (
            '{"type":"job.completed","timestamp":"2026-12-01T12:00:00+00:00",'
            '"data":{"job_id":"j","filename":"é.jpg"}}'
        ).encode()
    )


def test_the_schedule_gives_each_delay_then_gives_up() -> None:
    schedule = Schedule((0, 5, 300), jitter=0)
    assert [schedule.next_delay(n, None) for n in (1, 2, 3)] == [5, 300, None]


def test_jitter_moves_a_delay_within_its_fraction() -> None:
    schedule = Schedule((0, 100), jitter=0.2)
    delays = {schedule.next_delay(1, None) for _ in range(200)}
    assert all(d is not None and 80 <= d <= 120 for d in delays)
    assert len(delays) > 100  # not one fixed value


def test_retry_after_is_never_sooner_and_at_most_the_longest_delay() -> None:
    schedule = Schedule((0, 5, 300), jitter=0)
    assert schedule.next_delay(1, 60) == 60
    assert schedule.next_delay(1, 1) == 5  # the schedule's own delay is longer
    assert schedule.next_delay(1, 10**9) == 300


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        ("Tue, 01 Dec 2026 12:01:00 GMT", 60.0),
        ("Tue, 01 Dec 2026 11:00:00 GMT", 0.0),  # in the past: now
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_is_read_as_seconds_or_an_http_date(
    value: str | None, seconds: float | None
) -> None:
    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    assert retry_after_s(value, now) == seconds
