"""Confirmed publishing and acknowledged consuming of protobuf messages over RabbitMQ."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Self, TypeVar

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractQueue,
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
Handler = Callable[[M], Awaitable[None]]


class BusError(RuntimeError):
    pass


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


class Bus:
    """One robust connection, a confirming channel for publishing, a channel per consumer."""

    def __init__(
        self,
        connection: AbstractRobustConnection,
        channel: AbstractChannel,
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
    ) -> Self:
        connection = await aio_pika.connect_robust(
            url, heartbeat=heartbeat_s, timeout=connect_timeout_s
        )
        channel = await connection.channel(publisher_confirms=True)
        topology = topology or Topology()
        await topology.declare(channel)
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
        exchange = await self._channel.get_exchange(exchange_name, ensure=False)
        try:
            confirmation = await exchange.publish(
                message, routing_key, mandatory=True, timeout=self._publish_timeout_s
            )
        except TimeoutError:
            raise PublishNotConfirmedError(
                f"no confirm for {routing_key} within {self._publish_timeout_s} s"
            ) from None
        if isinstance(confirmation, Basic.Ack):
            return
        if isinstance(confirmation, Basic.Nack):
            raise PublishNotConfirmedError(f"the broker refused {routing_key}")
        raise UnroutableError(f"no queue is bound to {exchange_name!r} with {routing_key!r}")

    @property
    def is_connected(self) -> bool:
        return not self.connection.is_closed and not self._channel.is_closed

    async def consume(self, spec: QueueSpec[M], handler: Handler[M], *, prefetch: int) -> Consumer:
        """Deliver decoded messages of `spec` to `handler`, at most `prefetch` at a time.

        A message is acknowledged only after the handler returns (its effect is durable by
        then); a handler error returns it to the queue, and the queue's delivery limit moves a
        message that keeps failing to the dead-letter queue. Undecodable messages go there at
        once, without reaching the handler.
        """
        channel = await self.connection.channel()
        await channel.set_qos(prefetch_count=prefetch)
        queue = await channel.get_queue(spec.name, ensure=False)
        consumer = Consumer(channel, queue)
        message_type = spec.route.message_type

        async def on_message(incoming: AbstractIncomingMessage) -> None:
            consumer._in_flight += 1
            consumer._idle.clear()
            try:
                await _handle(incoming, message_type, handler, spec)
            finally:
                consumer._in_flight -= 1
                if consumer._in_flight == 0:
                    consumer._idle.set()

        consumer._tag = await queue.consume(on_message)
        return consumer


async def _handle(
    incoming: AbstractIncomingMessage,
    message_type: type[M],
    handler: Handler[M],
    spec: QueueSpec[M],
) -> None:
    try:
        message = decode(incoming, message_type)
    except MalformedMessageError as exc:
        log.warning("dead-lettering a malformed message from %s: %s", spec.name, exc)
        await incoming.reject(requeue=False)
        return
    token = context.attach(propagate.extract(dict(incoming.headers or {})))
    try:
        with tracer.start_as_current_span(
            f"{spec.name} process",
            kind=SpanKind.CONSUMER,
            attributes={"messaging.system": "rabbitmq", "messaging.destination.name": spec.name},
        ):
            await handler(message)
    except Exception:
        log.exception(
            "handler failed on %s (delivery %s of %s); returning it to the queue",
            spec.name,
            incoming.headers.get("x-delivery-count", 0) if incoming.headers else 0,
            spec.delivery_limit,
        )
        await incoming.nack(requeue=True)
    else:
        await incoming.ack()
    finally:
        context.detach(token)
