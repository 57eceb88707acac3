"""OpenTelemetry for a Mutualis process: the global tracer and meter providers, propagation.

Owns the one-time setup of the *global* providers, so that the kernel (bus, HTTP) and any
library only ever call `opentelemetry.trace.get_tracer(...)`, `metrics.get_meter(...)` and
`opentelemetry.propagate.inject/extract`. Configuration comes from the standard `OTEL_*`
environment variables; nothing is exported unless an OTLP endpoint is given. Metrics are
also kept in the prometheus_client registry so every service can expose `/metrics`.

It must not create spans or metrics itself, nor be called at import time: the composition
root of a service calls `setup_telemetry` once, before it starts serving.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from opentelemetry import metrics, propagate, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

SERVICE_NAMESPACE = "mutualis"


@dataclass
class Telemetry:
    """The providers installed for this process; `enabled` is False under OTEL_SDK_DISABLED."""

    service_name: str
    enabled: bool
    tracer_provider: TracerProvider | None = None
    meter_provider: MeterProvider | None = None
    exporting: bool = False

    def shutdown(self) -> None:
        """Flush pending spans and metrics to the exporters, then stop them (at process exit)."""
        if self.tracer_provider is not None:
            self.tracer_provider.force_flush()
            self.tracer_provider.shutdown()
        if self.meter_provider is not None:
            self.meter_provider.force_flush()
            self.meter_provider.shutdown()


_installed: Telemetry | None = None


def setup_telemetry(
    service_name: str,
    *,
    service_version: str,
    datacenter: str,
    tenant_agnostic: bool = True,
    environment: str | None = None,
) -> Telemetry:
    """Install the global providers once per process and return them.

    A second call returns the first result: the OpenTelemetry API refuses to replace a global
    provider, so stacking a second one would silently lose its spans.
    """
    global _installed
    if _installed is not None:
        return _installed
    _install_propagators()
    if _env_flag("OTEL_SDK_DISABLED"):
        _installed = Telemetry(service_name=service_name, enabled=False)
        return _installed

    resource = service_resource(
        service_name,
        service_version=service_version,
        datacenter=datacenter,
        tenant_agnostic=tenant_agnostic,
        environment=environment or os.environ.get("MUTUALIS_ENVIRONMENT"),
    )
    exporting = _otlp_wanted("TRACES")
    tracer_provider = _tracer_provider(resource, exporting=exporting)
    meter_provider = _meter_provider(resource, exporting=_otlp_wanted("METRICS"))
    _instrument_http_clients()
    _installed = Telemetry(
        service_name=service_name,
        enabled=True,
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        exporting=exporting,
    )
    return _installed


def tracing_disabled() -> bool:
    """True under `OTEL_SDK_DISABLED=true`: no provider will record anything."""
    return _env_flag("OTEL_SDK_DISABLED")


def current_trace_ids() -> tuple[str | None, str | None]:
    """The hex trace id and span id of the current span, or (None, None) outside any span."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None, None
    return trace.format_trace_id(context.trace_id), trace.format_span_id(context.span_id)


def _instrument_http_clients() -> None:
    """CLIENT spans, with trace context sent along, for every outgoing HTTP call.

    The services call out through httpx (JWKS, SMS gateways, status callbacks) and aiohttp
    (pyHanko's timestamp client): an SRE sees the TSA or a gateway in the trace of the request
    that waited for it."""
    HTTPXClientInstrumentor().instrument()
    AioHttpClientInstrumentor().instrument()


def _install_propagators() -> None:
    # An operator's OTEL_PROPAGATORS is already honoured by opentelemetry.propagate; otherwise
    # make the W3C pair explicit so NATS headers and HTTP carry `traceparent` and `baggage`.
    if not os.environ.get("OTEL_PROPAGATORS"):
        propagate.set_global_textmap(
            CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()])
        )


def service_resource(
    service_name: str,
    *,
    service_version: str,
    datacenter: str,
    tenant_agnostic: bool,
    environment: str | None,
) -> Resource:
    """What every span and metric of this process says about where it comes from."""
    ours: dict[str, str | bool] = {
        "service.name": service_name,
        "service.version": service_version,
        "service.namespace": SERVICE_NAMESPACE,
        "cloud.availability_zone": datacenter,
        "mutualis.tenant_agnostic": tenant_agnostic,
    }
    if environment:
        ours["deployment.environment"] = environment
    # Resource.create lets code win over OTEL_RESOURCE_ATTRIBUTES / OTEL_SERVICE_NAME; merging
    # the environment last lets the operator correct what the code guessed.
    return Resource.create(ours).merge(OTELResourceDetector().detect())


def _tracer_provider(resource: Resource, *, exporting: bool) -> TracerProvider:
    existing = trace.get_tracer_provider()
    if isinstance(existing, TracerProvider):
        # Someone (a test's SpanCapture) installed an SDK provider first: it stays global, so
        # export through it rather than create one the API would refuse.
        provider = existing
    else:
        provider = TracerProvider(resource=resource)
        trace.set_tracer_provider(provider)
    if exporting:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


def _meter_provider(resource: Resource, *, exporting: bool) -> MeterProvider:
    existing = metrics.get_meter_provider()
    if isinstance(existing, MeterProvider):
        # Readers are fixed when a MeterProvider is built; one installed earlier is kept as is.
        return existing
    from opentelemetry.exporter.prometheus import PrometheusMetricReader

    readers: list[MetricReader] = [PrometheusMetricReader()]
    if exporting:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
    provider = MeterProvider(resource=resource, metric_readers=readers)
    metrics.set_meter_provider(provider)
    return provider


def _otlp_wanted(signal: str) -> bool:
    if os.environ.get(f"OTEL_{signal}_EXPORTER", "otlp").strip().lower() == "none":
        return False
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or os.environ.get(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT")
    )


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() == "true"
