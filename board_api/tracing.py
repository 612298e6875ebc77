"""OpenTelemetry traces, when an exporter is configured (`META_AGENT_OTEL_EXPORTER`).

`otlp` sends spans over OTLP/HTTP to `OTEL_EXPORTER_OTLP_ENDPOINT` (the standard variable),
`console` prints them. Every HTTP request gets a span (FastAPI instrumentation), and the
task state changes a request makes are recorded on it as `task.id` / `task.status`
attributes, so a trace shows which task a slow request touched. Without the setting,
nothing is imported and nothing is traced.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI

from board_api import wire
from sdk.schemas import TaskOut
from store.models import Task

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter


def exporter_for(name: str) -> SpanExporter:
    if name == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    raise ValueError(f"unknown OTel exporter {name!r}: use 'otlp' or 'console'")


def instrument(app: FastAPI, exporter: SpanExporter, *, batch: bool = True) -> TracerProvider:
    """Trace `app`'s requests into `exporter`; returns the tracer provider (to shut down)."""
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    from kernel import __version__

    provider = TracerProvider(
        resource=Resource.create({"service.name": "meta-agent", "service.version": __version__})
    )
    provider.add_span_processor(BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter))
    FastAPIInstrumentor.instrument_app(app, tracer_provider=provider, excluded_urls="healthz,readyz,metrics")
    return provider


def annotate(task_id: str, status: str | None = None) -> None:
    """Record the task a request acted on, on the current span (no-op without tracing)."""
    try:
        from opentelemetry import trace
    except ImportError:
        return
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attribute("task.id", task_id)
        if status:
            span.set_attribute("task.status", status)


def task_out(task: Task) -> TaskOut:
    """The API shape of a task a route acted on, noting the task on the request's span."""

    annotate(task.id, task.status)
    return wire.task_out(task)
