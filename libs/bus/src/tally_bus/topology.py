"""Every exchange, queue and routing key of Tally's bus, in one place.

Work (commands between services) goes through a direct exchange to quorum queues; job events go
through a topic exchange. Each work queue has an explicit delivery limit (RabbitMQ 3.10 sets none
by default) and dead-letters, at least once, into its own `.dead` queue, where poison messages
wait to be inspected and replayed (`tally admin dlq`).

A queue with retry delays gets one waiting queue per delay (`.wait.1`, `.wait.2`, ...): a message
whose handler failed is parked there with its attempt number, and the queue's TTL sends it back
to the work exchange when its time is up (back-off without a broker plugin; one queue per delay,
because RabbitMQ expires messages only from a queue's head).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Generic, TypeVar

import aio_pika
import aio_pika.exceptions
from aio_pika.abc import AbstractChannel, ExchangeType
from google.protobuf.message import Message

from tally_contracts.v1 import (
    Cancel,
    ChunkResult,
    DetectChunk,
    JobEvent,
    PhotoUploaded,
    SessionWait,
)

DEFAULT_DELIVERY_LIMIT: Final = 5
# A detector holds two chunks (its prefetch), so each detector that dies charges both with a
# delivery, though one at most made it die: five deliveries could not tell a chunk that kills
# detectors from one that was near a few that died (20 SIGKILLs in a minute once parked two
# innocent chunks). A chunk that kills every detector it reaches costs ten restarts before it
# is parked. (RabbitMQ 4.0 made 20 the default limit of quorum queues.)
CHUNK_DELIVERY_LIMIT: Final = 10
# Covariant: a route of DetectChunk is a route of Message (routes are read-only).
M_co = TypeVar("M_co", bound=Message, covariant=True)


class TopologyMismatchError(RuntimeError):
    """A queue exists with arguments other than those declared (an older version made it):
    RabbitMQ cannot change a queue's arguments, so it must be deleted and declared again."""


@dataclass(frozen=True, slots=True)
class Route(Generic[M_co]):
    """Where one kind of message goes: exchange and routing key, and its protobuf type."""

    exchange: str
    routing_key: str
    message_type: type[M_co]


@dataclass(frozen=True, slots=True)
class QueueSpec(Generic[M_co]):
    name: str
    route: Route[M_co]
    delivery_limit: int = DEFAULT_DELIVERY_LIMIT
    # Waits before the 2nd, 3rd, ... attempt when the handler fails; empty: no retries (the
    # message goes back to the queue at once, up to the delivery limit).
    retry_delays_s: tuple[float, ...] = ()

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.name}.dead"

    def wait_queue(self, attempt: int) -> str:
        """Where a message waits after its `attempt`-th attempt failed (1-based)."""
        return f"{self.name}.wait.{attempt}"

    @property
    def attempts(self) -> int:
        return 1 + len(self.retry_delays_s)


@dataclass(frozen=True, slots=True)
class Topology:
    """Names under a prefix, so tests (and side-by-side stacks) get their own isolated set."""

    prefix: str = "tally"
    # Back-off of a chunk whose detection failed (Triton away, a crash in the model): about
    # 1.5 min of retries in all before the chunk, and its job, fail.
    chunk_retry_delays_s: tuple[float, ...] = (2.0, 10.0, 30.0, 60.0)
    # Back-off of the orchestrator's work (the database away, the object store slow).
    work_retry_delays_s: tuple[float, ...] = (1.0, 5.0, 15.0, 30.0)

    @property
    def work_exchange(self) -> str:
        return f"{self.prefix}.work"

    @property
    def events_exchange(self) -> str:
        return f"{self.prefix}.events"

    @property
    def dead_letter_exchange(self) -> str:
        return f"{self.prefix}.dead"

    @property
    def retry_exchange(self) -> str:
        return f"{self.prefix}.retry"

    # Routes: what a publisher needs.
    @property
    def photo_uploaded(self) -> Route[PhotoUploaded]:
        return Route(self.work_exchange, "photo.uploaded", PhotoUploaded)

    @property
    def detect_chunk(self) -> Route[DetectChunk]:
        return Route(self.work_exchange, "chunk.detect", DetectChunk)

    @property
    def chunk_result(self) -> Route[ChunkResult]:
        return Route(self.work_exchange, "chunk.result", ChunkResult)

    @property
    def cancel(self) -> Route[Cancel]:
        return Route(self.work_exchange, "job.cancel", Cancel)

    @property
    def job_event(self) -> Route[JobEvent]:
        return Route(self.events_exchange, "job.event", JobEvent)

    @property
    def session_wait(self) -> Route[SessionWait]:
        return Route(self.events_exchange, "session.wait", SessionWait)

    # Queues: what a consumer needs.
    @property
    def photos_queue(self) -> QueueSpec[PhotoUploaded]:
        return QueueSpec(
            f"{self.prefix}.orchestrator.photos",
            self.photo_uploaded,
            retry_delays_s=self.work_retry_delays_s,
        )

    @property
    def chunks_queue(self) -> QueueSpec[DetectChunk]:
        return QueueSpec(
            f"{self.prefix}.detector.chunks",
            self.detect_chunk,
            delivery_limit=CHUNK_DELIVERY_LIMIT,
            retry_delays_s=self.chunk_retry_delays_s,
        )

    @property
    def results_queue(self) -> QueueSpec[ChunkResult]:
        return QueueSpec(
            f"{self.prefix}.orchestrator.results",
            self.chunk_result,
            retry_delays_s=self.work_retry_delays_s,
        )

    @property
    def cancels_queue(self) -> QueueSpec[Cancel]:
        return QueueSpec(
            f"{self.prefix}.orchestrator.cancels",
            self.cancel,
            retry_delays_s=self.work_retry_delays_s,
        )

    @property
    def events_queue(self) -> QueueSpec[JobEvent]:
        return QueueSpec(f"{self.prefix}.projector.events", self.job_event)

    @property
    def waits_queue(self) -> QueueSpec[SessionWait]:
        """The sessions' waits, for the projector (one a few seconds per open session; a lost
        one is replaced by the next, so no retries: a failed fold goes back to the queue)."""
        return QueueSpec(f"{self.prefix}.projector.waits", self.session_wait)

    @property
    def queues(self) -> tuple[QueueSpec[Message], ...]:
        return (
            self.photos_queue,
            self.chunks_queue,
            self.results_queue,
            self.cancels_queue,
            self.events_queue,
            self.waits_queue,
        )

    async def declare(self, channel: AbstractChannel) -> None:
        """Declare everything; safe to run from every service at start-up (idempotent)."""
        work = await channel.declare_exchange(self.work_exchange, ExchangeType.DIRECT, durable=True)
        events = await channel.declare_exchange(
            self.events_exchange, ExchangeType.TOPIC, durable=True
        )
        dead = await channel.declare_exchange(
            self.dead_letter_exchange, ExchangeType.DIRECT, durable=True
        )
        retry = await channel.declare_exchange(
            self.retry_exchange, ExchangeType.DIRECT, durable=True
        )
        exchanges = {self.work_exchange: work, self.events_exchange: events}
        for spec in self.queues:
            for attempt, delay in enumerate(spec.retry_delays_s, start=1):
                waiting = await channel.declare_queue(
                    spec.wait_queue(attempt),
                    durable=True,
                    arguments={
                        "x-message-ttl": int(delay * 1000),
                        "x-dead-letter-exchange": spec.route.exchange,
                        "x-dead-letter-routing-key": spec.route.routing_key,
                    },
                )
                await waiting.bind(retry, spec.wait_queue(attempt))
            try:
                queue = await channel.declare_queue(
                    spec.name, durable=True, arguments=_arguments(spec, self)
                )
            except aio_pika.exceptions.ChannelPreconditionFailed as exc:
                raise TopologyMismatchError(
                    f"queue {spec.name} exists with other arguments than this version of Tally "
                    f"declares ({_arguments(spec, self)}): let it drain, then delete it "
                    f"(rabbitmqctl delete_queue {spec.name}) and start again; or use another "
                    f"TALLY_BUS_PREFIX ({exc})"
                ) from exc
            await queue.bind(exchanges[spec.route.exchange], spec.route.routing_key)
            parked = await channel.declare_queue(
                spec.dead_letter_queue, durable=True, arguments={"x-queue-type": "quorum"}
            )
            await parked.bind(dead, spec.name)

    async def delete(self, channel: AbstractChannel) -> None:
        """Remove every queue and exchange of this prefix (tests clean up with it)."""
        for spec in self.queues:
            await channel.queue_delete(spec.name)
            await channel.queue_delete(spec.dead_letter_queue)
            for attempt in range(1, spec.attempts):
                await channel.queue_delete(spec.wait_queue(attempt))
        for name in (
            self.work_exchange,
            self.events_exchange,
            self.dead_letter_exchange,
            self.retry_exchange,
        ):
            await channel.exchange_delete(name)


def _arguments(spec: QueueSpec[Message], topology: Topology) -> dict[str, aio_pika.abc.FieldValue]:
    return {
        "x-queue-type": "quorum",
        "x-delivery-limit": spec.delivery_limit,
        "x-dead-letter-exchange": topology.dead_letter_exchange,
        "x-dead-letter-routing-key": spec.name,
        # At-least-once dead-lettering needs reject-publish overflow; no poison message is lost
        # between the queue and its dead-letter queue.
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }
