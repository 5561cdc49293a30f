"""Confirmed publishing and acknowledged consuming of protobuf messages over RabbitMQ."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol, Self, TypeVar, overload

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustChannel,
    AbstractRobustConnection,
)
from google.protobuf.message import DecodeError, Message
from opentelemetry import context, propagate, trace
from opentelemetry.trace import SpanKind
from pamqp.commands import Basic

from tally_bus.topology import QueueSpec, Route, Topology

log = logging.getLogger(__name__)
tracer = trace.get_tracer("tally_bus")

CONTENT_TYPE = "application/x-protobuf"
M = TypeVar("M", bound=Message)
R = TypeVar("R", bound=Message)
Handler = Callable[[M], Awaitable[None]]
# A handler that returns what it produces (None: nothing this time); the consumer publishes it.
Replier = Callable[[M], Awaitable[R | None]]
GiveUp = Callable[[M, str], Awaitable[None]]  # the message, and why it is given up
ATTEMPT_HEADER = "x-tally-attempt"
GIVE_BACK_PAUSE_S = 1.0  # before a message the broker could not take a step of is returned
ERROR_HEADER = "x-tally-error"


class BusError(RuntimeError):
    pass


class BusUnreachableError(BusError):
    """The first connection to RabbitMQ failed (refused, timed out, bad credentials)."""


class UnroutableError(BusError):
    """No queue is bound for the message: it would have been silently dropped."""


class PublishNotConfirmedError(BusError):
    """The broker refused (nacked) the message, or did not confirm it within the timeout."""


class MalformedMessageError(BusError):
    pass


def trace_headers() -> dict[str, str]:
    """The W3C trace context (traceparent, tracestate) of the current span, if any."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def encode(message: Message, headers: dict[str, str] | None = None) -> aio_pika.Message:
    """A persistent AMQP message carrying the protobuf bytes, its type and the trace context."""
    return _amqp_message(
        message.SerializeToString(),
        message.DESCRIPTOR.full_name,
        {**trace_headers(), **(headers or {})},
    )


def _amqp_message(body: bytes, message_type: str, headers: dict[str, str]) -> aio_pika.Message:
    return aio_pika.Message(
        body=body,
        content_type=CONTENT_TYPE,
        type=message_type,
        message_id=uuid.uuid4().hex,
        timestamp=datetime.now(UTC),
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        headers=dict(headers),
    )


def decode(incoming: AbstractIncomingMessage, message_type: type[M]) -> M:
    expected = message_type.DESCRIPTOR.full_name
    if incoming.type != expected:
        raise MalformedMessageError(f"expected a {expected}, got type {incoming.type!r}")
    try:
        return message_type.FromString(incoming.body)
    except DecodeError as exc:
        raise MalformedMessageError(f"undecodable {expected}: {exc}") from None


@dataclass(frozen=True, slots=True)
class QueueState:
    ready: int  # waiting for a consumer
    consumers: int


class Consumer:
    """A running consumer; `stop()` stops taking messages and waits for those in hand."""

    def __init__(self, channel: AbstractChannel, queue: AbstractQueue) -> None:
        self._channel = channel
        self._queue = queue
        self._tag: str | None = None
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def stop(self, grace_s: float = 30.0) -> None:
        if self._tag is not None:
            await self._queue.cancel(self._tag)
            self._tag = None
        try:
            await asyncio.wait_for(self._idle.wait(), grace_s)
        finally:
            # Whatever is still unacknowledged goes back to the queue when the channel closes.
            await self._channel.close()


class Publisher(Protocol):
    """What a handler needs of the bus: its topology and confirmed publishing (a Bus, or a
    tally_bus.testing.MemoryBus in unit tests)."""

    @property
    def topology(self) -> Topology: ...

    async def publish(self, route: Route[M], message: M) -> None: ...


class Bus:
    """One robust connection, a confirming channel for publishing, a channel per consumer."""

    def __init__(
        self,
        connection: AbstractRobustConnection,
        channel: AbstractRobustChannel,
        topology: Topology,
        publish_timeout_s: float,
    ) -> None:
        self.connection = connection
        self.topology = topology
        self._channel = channel
        self._publish_timeout_s = publish_timeout_s

    @classmethod
    async def connect(
        cls,
        url: str,
        topology: Topology | None = None,
        *,
        publish_timeout_s: float = 10.0,
        heartbeat_s: int = 30,
        connect_timeout_s: float = 10.0,
        declare: bool = True,
    ) -> Self:
        """Connect; `declare` the topology (idempotent) unless the caller only uses what the
        services declared (operator tools: they need not know its settings)."""
        try:
            connection = await aio_pika.connect_robust(
                url, heartbeat=heartbeat_s, timeout=connect_timeout_s
            )
        except (OSError, aio_pika.exceptions.AMQPConnectionError) as exc:
            raise BusUnreachableError(f"cannot reach RabbitMQ: {exc}") from exc
        try:
            channel = await connection.channel(publisher_confirms=True)
            topology = topology or Topology()
            if declare:
                await topology.declare(channel)
        except BaseException:
            await connection.close()  # a start that fails leaves no connection behind
            raise
        return cls(connection, channel, topology, publish_timeout_s)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.connection.close()

    async def publish(self, route: Route[M], message: M) -> None:
        """Return once the broker has confirmed the message; raise if it did not take it."""
        if not isinstance(message, route.message_type):
            raise TypeError(f"{route.routing_key} carries {route.message_type.__name__} messages")
        with tracer.start_as_current_span(
            f"{route.routing_key} publish",
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": "rabbitmq",
                "messaging.destination.name": route.exchange,
            },
        ):
            await self._publish(route.exchange, route.routing_key, encode(message))

    async def publish_encoded(
        self,
        exchange: str,
        routing_key: str,
        message_type: str,
        payload: bytes,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Publish bytes encoded earlier (the outbox relay), with the trace context they kept."""
        await self._publish(
            exchange, routing_key, _amqp_message(payload, message_type, headers or {})
        )

    async def _publish(
        self, exchange_name: str, routing_key: str, message: aio_pika.Message
    ) -> None:
        try:
            async with asyncio.timeout(self._publish_timeout_s):
                # After a reconnection, consumers may be back before this channel is: wait for
                # it (within the timeout) rather than fail a message that could go out.
                await self._channel.ready()
                exchange = await self._channel.get_exchange(exchange_name, ensure=False)
                confirmation = await exchange.publish(message, routing_key, mandatory=True)
        except TimeoutError:
            raise PublishNotConfirmedError(
                f"no confirm for {routing_key} within {self._publish_timeout_s} s"
            ) from None
        if isinstance(confirmation, Basic.Ack):
            return
        if isinstance(confirmation, Basic.Nack):
            raise PublishNotConfirmedError(f"the broker refused {routing_key}")
        raise UnroutableError(f"no queue is bound to {exchange_name!r} with {routing_key!r}")

    async def queue_state(self, spec: QueueSpec[Message]) -> QueueState:
        """How many messages wait in the queue (not counting those delivered and not yet
        acknowledged) and how many consumers it has, as the broker says now."""
        async with asyncio.timeout(self._publish_timeout_s):  # never hangs on a dead connection
            channel = await self.connection.channel()
            try:
                queue = await channel.declare_queue(spec.name, passive=True, robust=False)
                declared = queue.declaration_result
                return QueueState(declared.message_count or 0, declared.consumer_count or 0)
            finally:
                await channel.close()

    @property
    def is_connected(self) -> bool:
        return not self.connection.is_closed and not self._channel.is_closed

    @overload
    async def consume(
        self,
        spec: QueueSpec[M],
        handler: Handler[M],
        *,
        prefetch: int,
        give_up: GiveUp[M] | None = None,
    ) -> Consumer: ...

    @overload
    async def consume(
        self,
        spec: QueueSpec[M],
        handler: Replier[M, R],
        *,
        prefetch: int,
        give_up: GiveUp[M] | None = None,
        publish_to: Route[R],
    ) -> Consumer: ...

    async def consume(
        self,
        spec: QueueSpec[M],
        handler: Replier[M, Message],
        *,
        prefetch: int,
        give_up: GiveUp[M] | None = None,
        publish_to: Route[Message] | None = None,
    ) -> Consumer:
        """Deliver decoded messages of `spec` to `handler`, at most `prefetch` at a time; with
        `publish_to`, what the handler returns (unless None) is published there, confirmed,
        as part of handling the message.

        A message is acknowledged only after the handler returns (its effect is durable by
        then, its reply confirmed). When the handler (or its reply's publish) fails and the
        queue has retry delays, the message waits its turn in the next waiting queue (attempt
        n+1, with the error) and comes back; after the last attempt, or when its earlier
        deliveries never finished (the consumer died holding it, delivery limit reached),
        `give_up(message, reason)` is awaited (tell whoever waits for the outcome) and the
        message is parked in the dead-letter queue with the reason. A queue without retry
        delays returns a failed message at once, up to its delivery limit. Undecodable
        messages go to the dead-letter queue at once, untouched.
        """
        channel = await self.connection.channel()
        await channel.set_qos(prefetch_count=prefetch)
        # Declared (passively: it exists), not just named: a robust channel restores the
        # consumers of the queues it declared, and only those, after a reconnection.
        queue = await channel.declare_queue(spec.name, passive=True)
        consumer = Consumer(channel, queue)
        message_type = spec.route.message_type
        handle = replying(handler, publish_to, self)

        async def on_message(incoming: AbstractIncomingMessage) -> None:
            consumer._in_flight += 1
            consumer._idle.clear()
            try:
                await self._deliver(incoming, message_type, handle, spec, give_up)
            finally:
                consumer._in_flight -= 1
                if consumer._in_flight == 0:
                    consumer._idle.set()

        consumer._tag = await queue.consume(on_message)
        return consumer

    async def _deliver(
        self,
        incoming: AbstractIncomingMessage,
        message_type: type[M],
        handler: Handler[M],
        spec: QueueSpec[M],
        give_up: GiveUp[M] | None,
    ) -> None:
        try:
            message = decode(incoming, message_type)
        except MalformedMessageError as exc:
            log.warning("dead-lettering a malformed message from %s: %s", spec.name, exc)
            await incoming.reject(requeue=False)
            return
        headers = dict(incoming.headers or {})
        attempt = int(str(headers.get(ATTEMPT_HEADER, 1)))
        returned = int(str(headers.get("x-delivery-count", 0)))  # deliveries never finished
        if returned >= spec.delivery_limit - 1:
            reason = (
                f"delivered {returned + 1} times and never finished: its handler failed or "
                "its consumer died each time"
            )
            await self._park(incoming, spec, message, reason, give_up)
            return
        token = context.attach(propagate.extract({k: str(v) for k, v in headers.items()}))
        try:
            with tracer.start_as_current_span(
                f"{spec.name} process",
                kind=SpanKind.CONSUMER,
                attributes={
                    "messaging.system": "rabbitmq",
                    "messaging.destination.name": spec.name,
                },
            ):
                await handler(message)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
            if not spec.retry_delays_s:
                log.exception(
                    "handler failed on %s (delivery %s of %s); returning it to the queue",
                    spec.name,
                    returned + 1,
                    spec.delivery_limit,
                )
                with contextlib.suppress(Exception):  # a closed channel returns it anyway
                    await incoming.nack(requeue=True)
            elif attempt < spec.attempts:
                delay = spec.retry_delays_s[attempt - 1]
                log.warning(
                    "%s: attempt %d of %d failed (%s); again in %.0f s",
                    spec.name,
                    attempt,
                    spec.attempts,
                    error,
                    delay,
                )
                try:
                    await self._publish(
                        self.topology.retry_exchange,
                        spec.wait_queue(attempt),
                        _copy(incoming, {ATTEMPT_HEADER: str(attempt + 1), ERROR_HEADER: error}),
                    )
                except Exception as publish_error:
                    await _give_back(incoming, spec, publish_error)
                    return
                await incoming.ack()
            else:
                reason = f"failed {attempt} times; last: {error}"
                await self._park(incoming, spec, message, reason, give_up)
        else:
            await incoming.ack()
        finally:
            context.detach(token)

    async def _park(
        self,
        incoming: AbstractIncomingMessage,
        spec: QueueSpec[M],
        message: M,
        reason: str,
        give_up: GiveUp[M] | None,
    ) -> None:
        """Give up on a message: tell `give_up`, then move it to the dead-letter queue with the
        reason (published there, confirmed, before the original is acknowledged)."""
        log.error("%s: giving up on a message: %s", spec.name, reason)
        if give_up is not None:
            try:
                await give_up(message, reason)
            except Exception:  # could not tell (database away?): keep it, try again later
                log.exception("%s: could not give up on a message; returning it", spec.name)
                await incoming.nack(requeue=True)
                return
        try:
            await self._publish(
                self.topology.dead_letter_exchange,
                spec.name,
                _copy(incoming, {ERROR_HEADER: reason[:500]}),
            )
        except Exception as publish_error:
            await _give_back(incoming, spec, publish_error)
            return
        await incoming.ack()


def replying(
    handler: Replier[M, Message], publish_to: Route[Message] | None, publisher: Publisher
) -> Handler[M]:
    """`handler` as a plain Handler: its reply, when it gives one, published to `publish_to`.
    Any bus's consume wraps its handler so (a reply without a route is a mistake)."""

    async def handle(message: M) -> None:
        reply = await handler(message)
        if reply is None:
            return
        if publish_to is None:
            raise TypeError(f"a handler returned a {type(reply).__name__} with no publish_to")
        await publisher.publish(publish_to, reply)

    return handle


async def _give_back(
    incoming: AbstractIncomingMessage, spec: QueueSpec[M], error: Exception
) -> None:
    """The broker could not take the message's next step (its retry or its dead letter: it is
    down, or coming back from a restart): return the message to its queue after a pause, so it
    is neither lost nor held unacknowledged for ever. (When this channel is gone the broker
    returns it by itself.)"""
    log.warning("%s: could not pass a message on (%s); returning it", spec.name, error)
    await asyncio.sleep(GIVE_BACK_PAUSE_S)
    with contextlib.suppress(Exception):
        await incoming.nack(requeue=True)


def _copy(incoming: AbstractIncomingMessage, headers: dict[str, str]) -> aio_pika.Message:
    """The same message (body, type, id, trace context) with these headers added."""
    kept = {k: str(v) for k, v in (incoming.headers or {}).items() if not k.startswith("x-")}
    kept |= {k: str(v) for k, v in (incoming.headers or {}).items() if k.startswith("x-tally-")}
    message = _amqp_message(incoming.body, incoming.type or "", kept | headers)
    message.message_id = incoming.message_id or message.message_id
    return message
