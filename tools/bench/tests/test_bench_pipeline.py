"""The pipeline bench's pure pieces: rates from polls, /proc, Triton's counters, the stack's log."""

from __future__ import annotations

import math

import pytest

from tally_bench._cpu import TICKS_PER_S, parse_machine, parse_stat, role, spent
from tally_bench._rates import Sample, crossing, epoch, rate, steady_rate
from tally_bench._triton_stats import TritonCounters, parse_statistics
from tally_bench.pipeline import OTHERS, Figures, chunks_planned, compared_rows, disturbances

POLLS = [Sample(100.0, 0), Sample(101.0, 0), Sample(102.0, 40), Sample(104.0, 80), Sample(105, 100)]


def test_a_crossing_is_interpolated_between_the_polls_around_it() -> None:
    assert crossing(POLLS, 20) == pytest.approx(101.5)
    assert crossing(POLLS, 40) == 102.0
    assert crossing(POLLS, 60) == pytest.approx(103.0)


def test_a_count_no_poll_reached_has_no_crossing() -> None:
    assert crossing(POLLS, 101) is None
    assert crossing([], 1) is None


def test_the_steady_rate_leaves_out_the_ramp_at_both_ends() -> None:
    # 10 slices at 101.25 s, 90 at 104.5 s: 80 slices in 3.25 s.
    assert steady_rate(POLLS, 100) == pytest.approx(80 / 3.25)


def test_the_steady_rate_needs_polls_across_its_window() -> None:
    assert steady_rate([Sample(1.0, 0), Sample(2.0, 100)], 100) == pytest.approx(100.0)
    assert steady_rate([Sample(1.0, 100)], 100) is None  # one poll: no time between the two
    with pytest.raises(ValueError, match="low < high"):
        steady_rate(POLLS, 100, low=0.9, high=0.1)


def test_api_timestamps_are_read_with_their_offset() -> None:
    assert epoch("2024-05-01T12:00:00.250000+00:00") == 1714564800.25
    assert epoch("2024-05-01T14:00:00+02:00") == 1714564800.0
    with pytest.raises(ValueError, match="offset"):
        epoch("2024-05-01T12:00:00")


def test_a_rate_over_no_time_is_not_a_number() -> None:
    assert rate(10, 4) == 2.5
    assert math.isnan(rate(10, 0))


def test_a_proc_stat_line_gives_the_parent_and_cpu_seconds_whatever_the_name() -> None:
    fields = ["S", "41", *["0"] * 9, str(3 * TICKS_PER_S), str(TICKS_PER_S), "0", "0"]
    stat = parse_stat("1234 (tally (detector) x) " + " ".join(fields))
    assert (stat.ppid, stat.cpu_s) == (41, 4.0)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["/venv/bin/python", "/venv/bin/tally-detector"], "detector"),
        (["/venv/bin/python", "/venv/bin/tally-triton", "serve", "--state-dir", "x"], "triton"),
        (["/env/bin/tritonserver", "--model-repository=/m"], "triton"),
        (["/tmp/b/python/triton_python_backend_stub", "/m/model.py"], "triton"),
        (["nginx: worker process"], "edge"),
        (["/venv/bin/python", "/venv/bin/moto_server", "-p", "1"], "s3"),
        (["/venv/bin/python", "-m", "tally_stack.cli", "supervise"], "supervisor"),
        ([], "?"),
    ],
)
def test_a_process_of_the_stack_is_known_by_its_command_line(
    argv: list[str], expected: str
) -> None:
    assert role(argv) == expected


def test_the_machine_is_busy_in_everything_but_idle_and_iowait() -> None:
    t = TICKS_PER_S
    line = f"cpu  {5 * t} {1 * t} {2 * t} {10 * t} {3 * t} 0 {1 * t} 0 {4 * t} 0\ncpu0 1 2 3\n"
    machine = parse_machine(line)
    assert (machine.busy_s, machine.total_s) == (9.0, 22.0)  # guest is inside user already


def test_cpu_spent_is_the_difference_of_two_readings_largest_first() -> None:
    assert list(spent({"a": 1.0, "b": 1.0}, {"a": 1.5, "b": 3.0, "c": 0.25}).items()) == [
        ("b", 2.0),
        ("a", 0.5),
        ("c", 0.25),
    ]


STATISTICS = {
    "model_stats": [
        {
            "name": "tally_detector",
            "version": "1",
            "inference_count": "40",
            "execution_count": "4",
            "inference_stats": {
                "success": {"count": "5", "ns": "9000"},
                "fail": {},
                "queue": {"count": "5", "ns": "500"},
                "compute_infer": {"count": "5", "ns": "99999"},
            },
            # Two requests of 8 joined into one run of 16: that run counts once.
            "batch_stats": [
                {
                    "batch_size": "8",
                    "compute_input": {"count": "3", "ns": "30"},
                    "compute_infer": {"count": "3", "ns": "3000"},
                    "compute_output": {"count": "3", "ns": "60"},
                },
                {
                    "batch_size": "16",
                    "compute_input": {"count": "1", "ns": "20"},
                    "compute_infer": {"count": "1", "ns": "2000"},
                    "compute_output": {"count": "1", "ns": "40"},
                },
            ],
        },
        {"name": "other", "version": "1", "inference_count": "999", "execution_count": "9"},
    ]
}


def test_triton_statistics_are_read_for_one_model_counting_each_run_once() -> None:
    counters = parse_statistics(STATISTICS)
    assert counters == TritonCounters(
        requests=5, inferences=40, executions=4, queue_ns=500, running_ns=5150
    )
    assert counters.busy_s == pytest.approx(5.15e-6)


def test_a_model_never_run_has_zero_counters() -> None:
    idle = {"model_stats": [{"name": "tally_detector", "version": "1", "inference_stats": {}}]}
    assert parse_statistics(idle) == TritonCounters()


def test_counters_of_two_phases_add_and_subtract() -> None:
    one = TritonCounters(1, 8, 1, 10, 100)
    assert one + one - one == one


def test_a_server_going_away_under_the_stack_is_found_in_its_log() -> None:
    log = "\n".join(
        [
            "14:32:04 detector | ERROR aiormq.connection Unexpected connection close from remote "
            '"amqp://guest:******@127.0.0.1:5672/", Connection.Close(reply_code=320, '
            'reply_text="CONNECTION_FORCED - broker forced connection closure")',
            "14:32:05 gateway  | WARNING Connection attempt failed: [Errno 111] Connect call "
            "failed ('127.0.0.1', 5672). Reconnecting after 5 seconds.",
            "14:32:06 gateway  | INFO GET /v1/sessions/s/jobs 200",
        ]
    )
    assert disturbances(log) == ["RabbitMQ went away under the stack (2 lines in its log)"]
    assert disturbances("14:32:06 gateway  | INFO GET /healthz 200") == []


def test_the_chunks_planned_are_summed_from_the_orchestrators_log() -> None:
    log = (
        "14:47:04 orchestrator | INFO tally_orchestrator.handlers job a: 88 slices in 6 chunks\n"
        "14:47:04 orchestrator | INFO tally_orchestrator.handlers job b: 20 slices in 2 chunks\n"
        "14:47:07 orchestrator | INFO tally_orchestrator.handlers job a completed\n"
    )
    assert chunks_planned(log) == 8
    assert chunks_planned("") is None


def _run_json(detector_s: float, triton_ns: int) -> dict[str, object]:
    """The fields of a run's --json that a later run compares with."""
    counters = {"inferences": 100, "running_ns": triton_ns}
    return {
        "ratio": 0.7,
        "steady_slices_per_s": 80.0,
        "raw_slices_per_s": 100.0,
        "pipeline_slices_per_s": 70.0,
        "raw_before": {"usage": {"triton": {"inferences": 100, "running_ns": 800_000_000}}},
        "raw_after": {"usage": {"triton": {"inferences": 100, "running_ns": 1_000_000_000}}},
        "pipeline": {
            "slices": 200,
            "usage": {
                "triton": counters,
                "cpu_s": {"triton": 3.0, "detector": detector_s, "bench": 0.2},
                "machine_busy_s": 3.0 + detector_s + 0.2 + 0.4,
            },
        },
    }


def test_an_earlier_runs_json_gives_its_figures_per_slice() -> None:
    figures = Figures.from_json(_run_json(detector_s=1.0, triton_ns=1_200_000_000))
    assert figures.steady_ratio == pytest.approx(0.8)
    assert figures.triton_ms == pytest.approx((9.0, 12.0))
    assert figures.cpu_ms == pytest.approx(
        {"triton": 15.0, "detector": 5.0, "bench": 1.0, OTHERS: 2.0}
    )
    # Outside Triton: the detector and the servers, not Triton and not the bench itself.
    assert figures.services_ms == pytest.approx(7.0)


def test_a_comparison_shows_both_runs_and_their_change() -> None:
    before = Figures.from_json(_run_json(detector_s=1.0, triton_ns=1_200_000_000))
    after = Figures.from_json(_run_json(detector_s=0.5, triton_ns=1_000_000_000))
    rows = {r.figure.strip(): r.value for r in compared_rows(before, after)}
    assert rows["detector"] == "5.00 → 2.50 (0.50×)"
    assert rows["everything outside Triton (the bench left out)"] == "7.00 → 4.50 (0.64×)"
    assert rows["Triton compute per slice, pipeline, ms"] == "12.0 → 10.0 (0.83×)"
    assert "bench" not in rows
