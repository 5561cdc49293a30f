"""Tracing: one trace from the upload request through the bus to Triton and the projector. The
W3C trace context travels in AMQP headers (tally_bus) and in the outbox. (A worker's start-up and
probes are tally_worker's.)"""

from __future__ import annotations

import os

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

__all__ = ["configure_tracing"]


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
