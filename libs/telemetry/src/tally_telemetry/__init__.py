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

__all__ = ["configure_tracing", "run_worker"]


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
    """Start a bus worker the same way everywhere: logging, tracing, and an event set by SIGTERM
    or SIGINT that `run` awaits before it drains its work and returns."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    configure_tracing(service)

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run(stop)

    asyncio.run(serve())
