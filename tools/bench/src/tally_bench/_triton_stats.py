"""Triton's own statistics for one model (its statistics API): how busy the model was.

The per-batch-size statistics count every model run once, however many requests dynamic batching
joined into it, so their compute time between two readings is the time the model was running.
"""

from __future__ import annotations

import dataclasses
import operator
from dataclasses import dataclass
from typing import Any

from tritonclient.grpc import InferenceServerClient

MODEL = "tally_detector"
_PHASES = ("compute_input", "compute_infer", "compute_output")


@dataclass(frozen=True, slots=True)
class TritonCounters:
    requests: int = 0  # successful requests (one per batch a client sends)
    inferences: int = 0  # slices
    executions: int = 0  # model runs: dynamic batching may join requests into one
    queue_ns: int = 0  # summed over requests
    running_ns: int = 0  # summed over model runs

    def __add__(self, other: TritonCounters) -> TritonCounters:
        return TritonCounters(*map(operator.add, self._values(), other._values()))

    def __sub__(self, other: TritonCounters) -> TritonCounters:
        return TritonCounters(*map(operator.sub, self._values(), other._values()))

    def _values(self) -> list[int]:
        return [getattr(self, f.name) for f in dataclasses.fields(self)]

    @property
    def busy_s(self) -> float:
        return self.running_ns / 1e9


def parse_statistics(answer: dict[str, Any], model: str = MODEL) -> TritonCounters:
    """The model's counters (all versions summed) from the statistics API's JSON, where numbers
    are strings and a count never reached is left out."""

    def ns(block: dict[str, Any], phase: str) -> int:
        return int(block.get(phase, {}).get("ns", 0))

    sums = TritonCounters()
    for stats in answer.get("model_stats", []):
        if stats["name"] != model:
            continue
        inference = stats.get("inference_stats", {})
        sums += TritonCounters(
            requests=int(inference.get("success", {}).get("count", 0)),
            inferences=int(stats.get("inference_count", 0)),
            executions=int(stats.get("execution_count", 0)),
            queue_ns=ns(inference, "queue"),
            running_ns=sum(ns(b, p) for b in stats.get("batch_stats", []) for p in _PHASES),
        )
    return sums


def read_statistics(grpc_url: str, model: str = MODEL) -> TritonCounters:
    client = InferenceServerClient(grpc_url)
    try:
        return parse_statistics(client.get_inference_statistics(model, as_json=True), model)
    finally:
        client.close()
