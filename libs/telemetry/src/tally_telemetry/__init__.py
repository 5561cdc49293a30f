"""Start-up shared by Tally's services, and tracing: one trace from the upload request through
the bus to Triton and the projector. The W3C trace context travels in AMQP headers (tally_bus)
and in the outbox."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Awaitable, Callable

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from tally_telemetry._probes import Probes, probes, set_readiness

__all__ = ["Probes", "configure_tracing", "probes", "run_worker", "set_readiness"]


def configure_tracing(service: str, processor: SpanProcessor | None = None) -> TracerProvider:
    """Install this process's tracer provider. Spans go to `processor` when given (tests), else
    to an OTLP/HTTP collector when OTEL_EXPORTER_OTLP_ENDPOINT is set, else nowhere (the trace
    context still propagates, so a traced client's traces continue through Tally)."""
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    if processor is not None:
        provider.add_span_processor(processor)
    elif os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return provider


def run_worker(service: str, run: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Start a bus worker the same way everywhere: logging, tracing, probes (/healthz, /readyz,
    /metrics on TALLY_PROBES_PORT when set), and an event set by SIGTERM or SIGINT that `run`
    awaits before it drains its work and returns (readiness turns false at once)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    configure_tracing(service)

    async def serve() -> None:
        stop = asyncio.Event()

        def stopping() -> None:
            probes.stopping = True  # not ready from now on: no new work is routed here
            stop.set()

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping)
        port = os.environ.get("TALLY_PROBES_PORT")
        if port:
            bound = await probes.start(os.environ.get("TALLY_PROBES_HOST", "127.0.0.1"), int(port))
            logging.getLogger(service).info("probes on port %d", bound)
        try:
            await run(stop)
        finally:
            await probes.close()

    asyncio.run(serve())
