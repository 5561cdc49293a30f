"""An in-memory bus for unit tests of handlers: no RabbitMQ.

`MemoryBus` has the Bus's `topology`, `publish` and `consume`: a message published to a route
goes at once to each handler consuming a queue of that route (as a copy, through its bytes, as
it would travel), and a handler's reply (`publish_to`) is published the same way; every message
published is kept, in order, for the test to read (`messages(route)`). There is no broker here:
nothing is retried, parked or given up, and a handler's error reaches whoever published the
message, so a test sees it at once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import overload

from google.protobuf.message import Message

from tally_bus._bus import GiveUp, Handler, M, R, Replier, replying
from tally_bus.topology import QueueSpec, Route, Topology


class MemoryConsumer:
    def __init__(self, bus: MemoryBus, queue: str) -> None:
        self._bus = bus
        self._queue = queue

    async def stop(self, grace_s: float = 30.0) -> None:
        """Take no more messages."""
        self._bus._consumers.pop(self._queue, None)


class MemoryBus:
    def __init__(self, topology: Topology | None = None) -> None:
        self.topology = topology or Topology()
        self.published: list[tuple[Route[Message], Message]] = []
        # queue name → (the route it takes, its handler)
        self._consumers: dict[str, tuple[Route[Message], Callable[[Message], Awaitable[None]]]] = {}

    async def publish(self, route: Route[M], message: M) -> None:
        if not isinstance(message, route.message_type):
            raise TypeError(f"{route.routing_key} carries {route.message_type.__name__} messages")
        self.published.append((route, message))
        for taken, handler in list(self._consumers.values()):
            if taken == route:
                await handler(route.message_type.FromString(message.SerializeToString()))

    def messages(self, route: Route[M]) -> list[M]:
        """What was published to `route`, oldest first."""
        return [m for r, m in self.published if r == route and isinstance(m, route.message_type)]

    @overload
    async def consume(
        self,
        spec: QueueSpec[M],
        handler: Handler[M],
        *,
        prefetch: int,
        give_up: GiveUp[M] | None = None,
    ) -> MemoryConsumer: ...

    @overload
    async def consume(
        self,
        spec: QueueSpec[M],
        handler: Replier[M, R],
        *,
        prefetch: int,
        give_up: GiveUp[M] | None = None,
        publish_to: Route[R],
    ) -> MemoryConsumer: ...

    async def consume(
        self,
        spec: QueueSpec[M],
        handler: Replier[M, Message],
        *,
        prefetch: int,
        give_up: GiveUp[M] | None = None,
        publish_to: Route[Message] | None = None,
    ) -> MemoryConsumer:
        """Hand `spec`'s messages to `handler` from now on. `prefetch` and `give_up` are the
        Bus's: taken so a service's wiring runs unchanged, unused here (nothing is given up)."""
        if spec.name in self._consumers:
            raise ValueError(f"{spec.name} is consumed already")
        handle = replying(handler, publish_to, self)
        message_type = spec.route.message_type

        async def deliver(message: Message) -> None:
            assert isinstance(message, message_type)  # only its route's messages reach it
            await handle(message)

        self._consumers[spec.name] = (spec.route, deliver)
        return MemoryConsumer(self, spec.name)
