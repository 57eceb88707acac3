"""Capture finished spans in memory, to assert the shape of traces in tests."""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


class SpanCapture:
    """Installs (once per process) an SDK tracer provider that records every span."""

    _exporter: InMemorySpanExporter | None = None

    def __init__(self) -> None:
        if SpanCapture._exporter is None:
            provider = trace.get_tracer_provider()
            if not isinstance(provider, TracerProvider):
                provider = TracerProvider()
                trace.set_tracer_provider(provider)
            SpanCapture._exporter = InMemorySpanExporter()
            provider.add_span_processor(SimpleSpanProcessor(SpanCapture._exporter))
        self.exporter = SpanCapture._exporter
        self.exporter.clear()

    @property
    def spans(self) -> Sequence[ReadableSpan]:
        return self.exporter.get_finished_spans()

    def named(self, prefix: str) -> list[ReadableSpan]:
        return [s for s in self.spans if s.name.startswith(prefix)]
