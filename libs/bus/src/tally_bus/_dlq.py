"""The dead-letter queues, for operators: what is parked there and why, and sending it back."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from aio_pika.abc import AbstractIncomingMessage
from google.protobuf.message import DecodeError, Message

from tally_bus._bus import ATTEMPT_HEADER, ERROR_HEADER, Bus
from tally_bus.topology import QueueSpec

REPLAYED_HEADER = "x-tally-replayed"


@dataclass(frozen=True, slots=True)
class Parked:
    """One parked message."""

    queue: str  # the work queue it was taken from
    message_type: str
    message_id: str
    job_id: str  # '' when the message names none (or cannot be read)
    reason: str
    parked_at: datetime | None


def _job_id(spec: QueueSpec[Message], body: bytes) -> str:
    try:
        message = spec.route.message_type.FromString(body)
    except DecodeError:
        return ""
    job = getattr(message, "job", None)
    return str(getattr(job, "job_id", ""))


def _reason(incoming: AbstractIncomingMessage) -> str:
    headers = incoming.headers or {}
    if ERROR_HEADER in headers:
        return str(headers[ERROR_HEADER])
    deaths = headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        why = deaths[0].get("reason", "unknown")
        return f"dead-lettered by RabbitMQ: {why.decode() if isinstance(why, bytes) else why}"
    return "unknown"


def _specs(bus: Bus, queue: str | None) -> list[QueueSpec[Message]]:
    specs = [s for s in bus.topology.queues if queue in (None, s.name, s.dead_letter_queue)]
    if not specs:
        names = ", ".join(s.name for s in bus.topology.queues)
        raise ValueError(f"no work queue {queue!r}; there are: {names}")
    return specs


async def parked(bus: Bus, queue: str | None = None, limit: int = 1000) -> list[Parked]:
    """What waits in the dead-letter queues (of one work queue, or all), oldest first, left
    where it is."""
    found: list[Parked] = []
    for spec in _specs(bus, queue):
        channel = await bus.connection.channel()
        try:
            dead = await channel.get_queue(spec.dead_letter_queue, ensure=False)
            taken = 0
            while taken < limit and (m := await dead.get(no_ack=False, fail=False)):
                taken += 1
                found.append(
                    Parked(
                        spec.name,
                        m.type or "",
                        m.message_id or "",
                        _job_id(spec, m.body),
                        _reason(m),
                        m.timestamp,
                    )
                )
        finally:
            await channel.close()  # everything taken goes back, in order
    return found


async def replay(bus: Bus, queue: str | None = None, limit: int = 1000) -> int:
    """Send parked messages back to their work queues for a fresh set of attempts (each
    published, confirmed, before it leaves the dead-letter queue); return how many."""
    sent = 0
    for spec in _specs(bus, queue):
        channel = await bus.connection.channel()
        try:
            dead = await channel.get_queue(spec.dead_letter_queue, ensure=False)
            while sent < limit and (m := await dead.get(no_ack=False, fail=False)):
                headers = {
                    k: str(v)
                    for k, v in (m.headers or {}).items()
                    if not k.startswith("x-") or k.startswith("x-tally-")
                }
                for name in (ATTEMPT_HEADER, ERROR_HEADER):
                    headers.pop(name, None)
                headers[REPLAYED_HEADER] = "1"
                await bus.publish_encoded(
                    spec.route.exchange, spec.route.routing_key, m.type or "", m.body, headers
                )
                await m.ack()
                sent += 1
        finally:
            await channel.close()
    return sent
