"""Telemetry is installed once per process, says where it comes from and crosses NATS headers."""

import pytest
from opentelemetry import propagate, trace

from mutualis_kernel.telemetry import current_trace_ids, service_resource, setup_telemetry


def describe(**overrides: str | None) -> dict[str, object]:
    arguments: dict[str, object] = {
        "service_version": "1.2.3",
        "datacenter": "dc2",
        "tenant_agnostic": True,
        "environment": None,
        **overrides,
    }
    return dict(service_resource("parapheur", **arguments).attributes)  # type: ignore[arg-type]


def test_the_resource_names_the_service_its_version_namespace_and_datacenter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)

    attributes = describe(environment="recette")

    assert attributes["service.name"] == "parapheur"
    assert attributes["service.version"] == "1.2.3"
    assert attributes["service.namespace"] == "mutualis"
    assert attributes["cloud.availability_zone"] == "dc2"
    assert attributes["deployment.environment"] == "recette"


def test_the_operator_can_add_and_correct_resource_attributes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        "OTEL_RESOURCE_ATTRIBUTES", "k8s.pod.name=parapheur-0,cloud.availability_zone=dc3"
    )

    attributes = describe()

    assert attributes["k8s.pod.name"] == "parapheur-0"
    assert attributes["cloud.availability_zone"] == "dc3"
    assert "deployment.environment" not in attributes


def test_setting_up_twice_returns_the_providers_of_the_first_call() -> None:
    first = setup_telemetry("parapheur", service_version="1", datacenter="dc1")
    second = setup_telemetry("parapheur", service_version="1", datacenter="dc1")

    assert second is first
    assert trace.get_tracer_provider() is first.tracer_provider


def test_trace_ids_exist_only_inside_a_span() -> None:
    setup_telemetry("parapheur", service_version="1", datacenter="dc1")

    assert current_trace_ids() == (None, None)
    with trace.get_tracer("test").start_as_current_span("step") as span:
        trace_id, span_id = current_trace_ids()

    assert trace_id == trace.format_trace_id(span.get_span_context().trace_id)
    assert span_id == trace.format_span_id(span.get_span_context().span_id)


def test_a_trace_crosses_a_dict_of_nats_headers() -> None:
    setup_telemetry("parapheur", service_version="1", datacenter="dc1")
    headers: dict[str, str] = {}

    with trace.get_tracer("test").start_as_current_span("publish") as span:
        propagate.inject(headers)
    context = propagate.extract(headers)

    assert "traceparent" in headers
    remote = trace.get_current_span(context).get_span_context()
    assert remote.trace_id == span.get_span_context().trace_id
