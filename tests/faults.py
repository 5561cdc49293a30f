"""A fault-injecting TCP proxy, written for the tests (no toxiproxy server is installable here)."""

from __future__ import annotations

import asyncio
import threading

from tally_stack import free_port

HEARTBEAT_FRAME = 8  # bytes: an AMQP heartbeat; anything longer carries a method


class FaultProxy:
    """A TCP proxy to `target` (host, port) on a free loopback port, for cutting connections
    the way a broken network does. `blackhole()`: from now on no byte passes either way, and
    the connections stay open (nobody is told); `blackhole(after_delivery=True)`: the same,
    from just after the next frames the server sends other than a heartbeat (e.g. a message
    delivered to a consumer); `restore()`: bytes pass again, on connections made from then on."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._holed = threading.Event()
        self._armed = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._writers: set[asyncio.StreamWriter] = set()

    def _run(self) -> None:
        """The proxy's own event loop, in its thread, until __exit__ stops it."""
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_forever()
        finally:
            tasks = asyncio.all_tasks(self._loop)
            for task in tasks:
                task.cancel()
            self._loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            self._loop.close()

    @property
    def url(self) -> str:
        """An AMQP URL through the proxy (guest/guest)."""
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._accept, "127.0.0.1", self.port), self._loop
        ).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        async def close() -> None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def blackhole(self, *, after_delivery: bool = False) -> None:
        if after_delivery:
            self._armed.set()
        else:
            self._holed.set()

    @property
    def holed(self) -> bool:
        return self._holed.is_set()

    def restore(self) -> None:
        self._armed.clear()
        self._holed.clear()
        # Connections cut stay cut (their peers gave up on them): drop them for good.
        asyncio.run_coroutine_threadsafe(self._drop_all(), self._loop).result(10)

    async def _drop_all(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        if self._holed.is_set():  # accepted, and then nothing: like a dead route
            self._writers.add(client_w)
            return
        server_r, server_w = await asyncio.open_connection(*self.target)
        self._writers |= {client_w, server_w}
        await asyncio.gather(
            self._pipe(client_r, server_w, from_server=False),
            self._pipe(server_r, client_w, from_server=True),
            return_exceptions=True,
        )

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, from_server: bool
    ) -> None:
        try:
            while data := await reader.read(65536):
                if self._holed.is_set():
                    continue  # lost on the way
                writer.write(data)
                await writer.drain()
                if from_server and self._armed.is_set() and len(data) > HEARTBEAT_FRAME:
                    self._armed.clear()
                    self._holed.set()
        finally:
            if not self._holed.is_set():
                writer.close()
