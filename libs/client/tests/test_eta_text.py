"""The ETA as the CLI prints it: the best estimate, its interval, counted down, or why there is
none."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tally_client.eta import eta_text, seconds_left

AT = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def test_minutes_with_their_interval() -> None:
    fields = {"eta_seconds": 240.0, "eta_range": [190.0, 350.0], "eta_at": AT.isoformat()}
    assert eta_text(fields, AT) == "about 4 min (3–6)"


def test_seconds_hours_and_no_range() -> None:
    assert eta_text({"eta_seconds": 40.0, "eta_range": [31.0, 52.0]}) == "about 40 s (31–52)"
    assert eta_text({"eta_seconds": 9000.0, "eta_range": [7560.0, 10800.0]}) == (
        "about 2.5 h (2.1–3.0)"
    )
    assert eta_text({"eta_seconds": 240.0}) == "about 4 min"  # the throughput's: no range


def test_it_counts_down_from_when_it_was_estimated() -> None:
    fields = {"eta_seconds": 240.0, "eta_range": [190.0, 350.0], "eta_at": AT.isoformat()}
    later = AT + timedelta(seconds=120)
    assert seconds_left(fields, later) == 120.0
    assert eta_text(fields, later) == "about 2 min (1–4)"
    assert eta_text(fields, AT + timedelta(hours=1)) == ""  # past it: nothing to say


def test_without_an_estimate_it_says_why() -> None:
    assert eta_text({"eta_seconds": None, "eta_reason": "no_detector"}) == "waiting for a detector"
    assert eta_text({"eta_seconds": None, "eta_reason": "measuring"}) == "measuring the rate"
    assert eta_text({"eta_seconds": 0.0, "eta_range": [0.0, 0.0]}) == ""
    assert eta_text({}) == ""
