"""The gateway's pure pieces: stream ids, stream tokens, subscriber buffers, ETA."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime

import pytest

from tally_gateway import _keyset, _tokens
from tally_gateway._streams import Frame, Subscriber, parse_id
from tally_gateway._views import eta_seconds, summary_from_session
from tally_gateway.routes import jobs as jobs_route
from tally_gateway.routes.events import _after
from tally_web import ApiError


def test_stream_ids_parse_only_when_they_are_redis_ids() -> None:
    assert parse_id("1732450000000-7") == (1732450000000, 7)
    assert parse_id("1-0") < parse_id("1-1") < parse_id("2-0")  # type: ignore[operator]
    for bad in ("", None, "7", "a-b", "1-", "-1", "1-2-3", "st1.x"):
        assert parse_id(bad) is None
    assert parse_id(f"{2**64 - 1}-{2**64 - 1}") == (2**64 - 1, 2**64 - 1)  # Redis's largest


@pytest.mark.parametrize(
    "bad",
    [
        "9" * 5000 + "-0",  # too long for int() (Python's digit limit): once a 500
        f"{2**64}-0",  # beyond what Redis takes: once a stream cut at its first read
        f"0-{2**64}",
        "\u0663-0",  # ARABIC-INDIC DIGIT THREE: isdigit() and int() take it, Redis would not
        "1-\uff11",  # FULLWIDTH DIGIT ONE
        "0" * 21 + "-0",
    ],
)
def test_stream_ids_that_are_no_redis_ids_are_none(bad: str) -> None:
    assert parse_id(bad) is None


def test_stream_tokens_verify_only_as_issued_and_until_they_expire() -> None:
    key = b"k" * 32
    grant = _tokens.StreamGrant(uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), 1_000)
    token = _tokens.issue(key, grant)
    assert _tokens.verify(key, token, now=999.0) == grant
    assert _tokens.verify(key, token, now=1_000.0) is None  # expired
    assert _tokens.verify(b"x" * 32, token, now=0) is None  # another gateway's secret
    signature = token.rsplit(".", 1)[1]
    other = _tokens.issue(
        key, _tokens.StreamGrant(uuid.uuid4(), grant.session_id, grant.key_id, 10**10)
    )
    other_payload = other.removeprefix(_tokens.PREFIX).split(".")[0]
    assert _tokens.verify(key, f"{_tokens.PREFIX}{other_payload}.{signature}", 0) is None
    assert _tokens.verify(key, "not a token", 0) is None


def test_a_stream_token_names_the_key_that_minted_it_and_older_tokens_are_refused() -> None:
    key = b"k" * 32
    grant = _tokens.StreamGrant(uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), 10**10)
    assert _tokens.verify(key, _tokens.issue(key, grant), 0).key_id == grant.key_id  # type: ignore[union-attr]
    # A genuinely signed st1 token (tenant.session.expiry, no key): not a grant any more.
    payload = _tokens._b64(f"{grant.tenant_id}.{grant.session_id}.{10**10}".encode())
    old = f"st1.{payload}.{_tokens._sign(key, payload)}"
    assert _tokens.verify(key, old, 0) is None
    relabelled = f"{_tokens.PREFIX}{payload}.{_tokens._sign(key, payload)}"
    assert _tokens.verify(key, relabelled, 0) is None


@pytest.mark.parametrize(
    ("filename", "header"),
    [
        ("tray 7.jpg", "inline; filename=\"tray 7.jpg\"; filename*=UTF-8''tray%207.jpg"),
        (
            'Sämling "1".jpg',
            "inline; filename=\"Samling _1_.jpg\"; filename*=UTF-8''S%C3%A4mling%20%221%22.jpg",
        ),
        ("../../etc/x.jpg", "inline; filename=\"x.jpg\"; filename*=UTF-8''x.jpg"),
        ("日本.jpg", "inline; filename=\".jpg\"; filename*=UTF-8''%E6%97%A5%E6%9C%AC.jpg"),
        ("a\r\nb.jpg", "inline; filename=\"a__b.jpg\"; filename*=UTF-8''a%0D%0Ab.jpg"),
    ],
)
def test_download_names_follow_rfc_6266_with_an_ascii_fallback(filename: str, header: str) -> None:
    assert jobs_route.content_disposition("inline", filename) == header


def _frame(ms: int, kind: str = "job") -> Frame:
    return Frame((ms, 0), kind, f"id: {ms}-0\n\n".encode())


def test_a_subscriber_that_overflows_is_marked_lagged_and_dropped() -> None:
    subscriber = Subscriber(buffer=2)
    subscriber.offer(_frame(1))
    subscriber.offer(_frame(2))
    assert len(subscriber) == 2
    subscriber.offer(_frame(3))
    assert subscriber.lagged
    assert subscriber.take() == []  # what it had is gone: it gets a snapshot instead
    subscriber.offer(_frame(4))
    assert subscriber.take() == []  # and nothing queues until its writer has caught up


def test_frames_already_sent_are_skipped_and_done_ends_the_stream() -> None:
    frames = [_frame(1), _frame(2), _frame(3, "done"), _frame(4)]
    last, chunk, done = _after(frames, (1, 0))
    assert (last, done) == ((3, 0), True)
    assert chunk == b"id: 2-0\n\nid: 3-0\n\n"
    assert _after(frames[:2], (2, 0)) == ((2, 0), b"", False)


def _eta(**given: object) -> float | None:
    fields: dict[str, object] = {
        "open_slices": 600,
        "unplanned_jobs": 0,
        "slices_done": 200,
        "slices_planned": 800,
        "jobs_planned": 8,
        "first_active": 100.0,
        "last_active": 110.0,
    }
    return eta_seconds(**(fields | given))  # type: ignore[arg-type]


def test_eta_comes_from_measured_throughput() -> None:
    assert _eta() == 30.0  # 200 slices in 10 s: 600 left take 30 s
    assert _eta(unplanned_jobs=2) == 40.0  # two more jobs of the mean planned size (100)
    assert _eta(open_slices=0) == 0.0
    assert _eta(slices_done=0) is None  # no rate yet
    assert _eta(last_active=100.0) is None
    assert _eta(unplanned_jobs=2, jobs_planned=0, slices_planned=0) is None


@pytest.mark.parametrize("final", ["completed", "failed", "cancelled"])
def test_a_session_summary_comes_from_the_fold_counters(final: str) -> None:
    fields = {
        "total": "3",
        "queued": "1",
        "processing": "1",
        final: "1",
        "slices_done": "150",
        "slices_total": "200",
        "slices_open": "50",
        "jobs_unplanned": "1",
        "jobs_planned": "2",
        "first_active": "1000.0",
        "last_active": "1015.0",
    }
    summary = summary_from_session(fields)
    assert (summary["total"], summary[final], summary["queued"]) == (3, 1, 1)
    assert summary["overall_progress_percent"] == 75.0
    assert summary["eta_seconds"] == 15.0  # (50 + 100) slices at 10/s


def _cursor_of(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "nonsense",
        "x" * 201,  # longer than any cursor of ours
        _cursor_of([[[[[]]]]]),
        _cursor_of("[" * 10),
        _cursor_of(["2026-12-01T12:00:00", str(uuid.uuid4())]),  # no UTC offset
        _cursor_of(["2026-12-01T12:00:00+00:00", "not a uuid"]),
        _cursor_of(["2026-12-01T12:00:00+00:00", str(uuid.uuid4()), "extra"]),
        _cursor_of([1, 2]),
        _cursor_of({"a": 1}),
        base64.urlsafe_b64encode(b"[" * 100_000).decode()[:200],
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
    ],
)
def test_a_cursor_not_made_here_is_refused_with_422(cursor: str) -> None:
    with pytest.raises(ApiError) as refused:
        _keyset.after(cursor)
    assert (refused.value.status, refused.value.code) == (422, "invalid_cursor")


def test_a_cursor_made_here_reads_back() -> None:
    at, job_id = datetime(2026, 12, 1, 12, 0, 0, 123456, tzinfo=UTC), uuid.uuid4()
    assert _keyset.after(_cursor_of([at.isoformat(), str(job_id)])) == (at, job_id)
    assert _keyset.after(_keyset.cursor(at, job_id)) == (at, job_id)


def test_the_usage_answers_limits_are_the_quotas() -> None:
    from tally_gateway.schemas import UsageLimits
    from tally_web.limits import QUOTAS

    assert tuple(UsageLimits.model_fields) == QUOTAS
