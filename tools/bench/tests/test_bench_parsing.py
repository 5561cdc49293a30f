"""The bench's pure pieces: what its clients parse, how it schedules and summarises."""

from __future__ import annotations

import itertools
import math

import pytest

from tally_bench._http import Dechunker, ResponseParser
from tally_bench._openloop import poll_schedule
from tally_bench._sse import stream_time, updated_at_of
from tally_bench._stats import Latencies, percentile
from tally_bench._wrk import headers_script, parse_wrk
from tally_bench.eta import main as bench_eta
from tally_client.sse import Frame, SSEParser

STREAM = (
    b"retry: 3000\n\n"
    b": heartbeat\n\n"
    b'id: 1700000000000-0\nevent: snapshot\ndata: {"session_id":"s","jobs":[],"reason":"connect"}'
    b"\n\n"
    b'id: 1700000000001-0\nevent: job\ndata: {"job_id":"j","processed":16,'
    b'"updated_at":"2024-05-01T12:00:00.250000+00:00","result":null}\n\n'
    b"id: 1700000000001-1\nevent: summary\ndata: {}\n\n"
)


def _chunked(payload: bytes, size: int) -> bytes:
    pieces = [payload[i : i + size] for i in range(0, len(payload), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


@pytest.mark.parametrize("piece", [1, 2, 7, 64, len(STREAM)])
def test_sse_frames_come_out_whole_however_the_bytes_are_cut(piece: int) -> None:
    parser = SSEParser()
    frames: list[Frame] = []
    for i in range(0, len(STREAM), piece):
        frames += parser.feed(STREAM[i : i + piece])

    assert [f.event for f in frames] == ["snapshot", "job", "summary"]
    assert frames[1].id == "1700000000001-0"
    assert parser.retry_ms == 3000


def test_sse_frames_with_crlf_line_ends_split_inside_a_crlf() -> None:
    crlf = STREAM.replace(b"\n", b"\r\n")
    parser = SSEParser()
    frames = [f for i in range(len(crlf)) for f in parser.feed(crlf[i : i + 1])]

    assert [f.event for f in frames] == ["snapshot", "job", "summary"]
    assert updated_at_of(frames[1].data) == "2024-05-01T12:00:00.250000+00:00"


def test_heartbeats_and_retry_alone_dispatch_no_frame() -> None:
    assert SSEParser().feed(b": heartbeat\n\nretry: 10\n\n") == []


@pytest.mark.parametrize(
    ("data", "found"),
    [
        (b'{"updated_at":"2024-05-01T12:00:00+00:00"}', "2024-05-01T12:00:00+00:00"),
        (b'{"updated_at": "2024-05-01T12:00:00Z", "x": 1}', "2024-05-01T12:00:00Z"),
        (b'{"updated_at":null,"filename":"a"}', None),
        (b'{"processed":3}', None),
    ],
)
def test_updated_at_is_found_without_parsing_the_json(data: bytes, found: str | None) -> None:
    assert updated_at_of(data) == found


def test_a_redis_stream_id_tells_when_its_entry_was_appended() -> None:
    assert stream_time("1700000000001-3") == pytest.approx(1_700_000_000.001)
    assert stream_time("abc") is None
    assert stream_time(None) is None


@pytest.mark.parametrize("piece", [1, 3, 10, 1000])
def test_chunked_bodies_are_dechunked_across_any_split(piece: int) -> None:
    raw = _chunked(STREAM, 17) + b"HTTP/1.1 200 OK"
    dechunker = Dechunker()
    out = b"".join(dechunker.feed(raw[i : i + piece]) for i in range(0, len(raw), piece))

    assert out == STREAM
    assert dechunker.done
    assert dechunker.rest == b"HTTP/1.1 200 OK"  # the next response, kept


def test_keep_alive_responses_are_parsed_one_after_another() -> None:
    body = b'{"jobs":[]}'
    raw = (
        b'HTTP/1.1 200 OK\r\nContent-Length: %d\r\nETag: "abc"\r\n\r\n%s' % (len(body), body)
        + b'HTTP/1.1 304 Not Modified\r\nETag: "abc"\r\n\r\n'
        + b"HTTP/1.1 500 Internal Server Error\r\nTransfer-Encoding: chunked\r\n\r\n"
        + _chunked(b"Internal Server Error", 8)
    )
    parser = ResponseParser()
    responses = [r for i in range(0, len(raw), 5) for r in parser.feed(raw[i : i + 5])]

    assert [(r.status, r.body) for r in responses] == [
        (200, body),
        (304, b""),
        (500, b"Internal Server Error"),
    ]
    assert responses[0].headers["etag"] == '"abc"'


def test_percentiles_are_observed_values_by_nearest_rank() -> None:
    samples = [float(v) for v in range(1, 101)]

    assert percentile(samples, 50) == 50
    assert percentile(samples, 99) == 99
    assert percentile(samples, 100) == 100
    assert percentile([7.0], 99) == 7
    assert math.isnan(percentile([], 50))
    assert Latencies.of(reversed(samples)) == Latencies(100, 50, 90, 99, 100)


def test_the_open_loop_schedule_is_fixed_in_advance_at_the_offered_rate() -> None:
    due = poll_schedule(pollers=2000, interval_s=2.0, duration_s=15.0, seed=1)

    assert due == sorted(due)
    assert due == poll_schedule(pollers=2000, interval_s=2.0, duration_s=15.0, seed=1)
    assert len(due) == pytest.approx(1000 * 15, rel=0.01)  # 2,000 pollers / 2 s
    assert due[0] >= 0
    assert due[-1] < 15.0
    # Spread, not in bursts: every second carries about a thousand requests.
    per_second = [sum(1 for t in due if s <= t < s + 1) for s in range(15)]
    assert min(per_second) > 900
    assert max(per_second) < 1100


def test_each_poller_polls_at_its_interval() -> None:
    due = poll_schedule(pollers=1, interval_s=2.0, duration_s=7.0, seed=3)

    assert len(due) in (3, 4)
    assert [round(b - a, 9) for a, b in itertools.pairwise(due)] == [2.0] * (len(due) - 1)


WRK_REPORT = """Running 10s test @ http://127.0.0.1:8002/v1/sessions/x/jobs
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    48.12ms   10.01ms 182.30ms   90.00%
    Req/Sec     1.04k    80.00     1.20k    70.00%
  Latency Distribution
     50%   45.50ms
     75%   50.00ms
     90%   60.00ms
     99%    1.20s
  10400 requests in 10.01s, 312.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:   1038.96
Transfer/sec:     31.17MB
"""


def test_wrk_reports_are_read_in_milliseconds() -> None:
    result = parse_wrk(WRK_REPORT)

    assert result.requests == 10400
    assert result.rps == pytest.approx(1038.96)
    assert result.p50_ms == pytest.approx(45.5)
    assert result.p99_ms == pytest.approx(1200.0)
    assert result.bad_status == 4
    assert result.socket_errors == 3


def test_wrk_header_scripts_quote_etags() -> None:
    script = headers_script({"If-None-Match": '"abc"'})

    assert script == 'wrk.headers["If-None-Match"] = "\\"abc\\""\n'


@pytest.mark.parametrize(
    ("setting", "said"),
    [
        ("TALLY_ETA_WINDOW_S", "TALLY_NAME=VALUE, not TALLY_ETA_WINDOW_S"),
        ("ETA_WINDOW_S=20", "TALLY_* settings, not ETA_WINDOW_S"),
        ("TALLY_STACK_DETECTORS=3", "TALLY_* settings, not TALLY_STACK_DETECTORS"),
    ],
)
def test_the_eta_bench_refuses_a_setting_it_cannot_pass_on(
    setting: str, said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        bench_eta(["--set", setting])
    assert exit_.value.code == 2
    assert said in capsys.readouterr().err
