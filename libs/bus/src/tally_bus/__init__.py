"""Tally's RabbitMQ bus: one topology, confirmed publishes, consumers that ack after the effect."""

from tally_bus._bus import (
    ATTEMPT_HEADER,
    ERROR_HEADER,
    Bus,
    BusError,
    BusUnreachableError,
    Consumer,
    GiveUp,
    Handler,
    MalformedMessageError,
    Publisher,
    PublishNotConfirmedError,
    QueueState,
    Replier,
    UnroutableError,
    decode,
    encode,
    trace_headers,
)
from tally_bus._dlq import Parked, parked, replay
from tally_bus.settings import BusFields
from tally_bus.topology import QueueSpec, Route, Topology, TopologyMismatchError

__all__ = [
    "ATTEMPT_HEADER",
    "ERROR_HEADER",
    "Bus",
    "BusError",
    "BusFields",
    "BusUnreachableError",
    "Consumer",
    "GiveUp",
    "Handler",
    "MalformedMessageError",
    "Parked",
    "PublishNotConfirmedError",
    "Publisher",
    "QueueSpec",
    "QueueState",
    "Replier",
    "Route",
    "Topology",
    "TopologyMismatchError",
    "UnroutableError",
    "decode",
    "encode",
    "parked",
    "replay",
    "trace_headers",
]
