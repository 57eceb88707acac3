"""Domain metrics: what each call counts, under which name and with which attributes."""

from datetime import UTC, datetime

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from mutualis_kernel import metrics as names
from mutualis_kernel.metrics import DomainMetrics

Points = dict[tuple[str, frozenset[tuple[str, object]]], float]


@pytest.fixture
def reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture
def domain(reader: InMemoryMetricReader) -> DomainMetrics:
    provider = MeterProvider(metric_readers=[reader])
    return DomainMetrics(provider.get_meter("test"))


def points(reader: InMemoryMetricReader) -> Points:
    """Every data point as (instrument name, attributes) -> value."""
    found: Points = {}
    data = reader.get_metrics_data()
    assert data is not None
    for resource_metrics in data.resource_metrics:
        for scope in resource_metrics.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    key = (metric.name, frozenset((point.attributes or {}).items()))
                    found[key] = point.value  # type: ignore[union-attr]
    return found


def key(name: str, **attributes: object) -> tuple[str, frozenset[tuple[str, object]]]:
    return name, frozenset(attributes.items())


def test_signatures_are_counted_per_tenant_and_level(
    domain: DomainMetrics, reader: InMemoryMetricReader
) -> None:
    domain.signature_applied("bordeaux", "advanced")
    domain.signature_applied("bordeaux", "advanced")
    domain.signature_applied("merignac", "seal")

    found = points(reader)

    tenant = "mutualis.tenant"
    assert (
        found[
            key(names.SIGNATURES_APPLIED, **{tenant: "bordeaux"}, **{"signature.level": "advanced"})
        ]
        == 2
    )
    assert (
        found[key(names.SIGNATURES_APPLIED, **{tenant: "merignac"}, **{"signature.level": "seal"})]
        == 1
    )


def test_an_ingested_record_counts_once_and_adds_its_bytes(
    domain: DomainMetrics, reader: InMemoryMetricReader
) -> None:
    domain.record_ingested("metropole", 1000)
    domain.record_ingested("metropole", 24)

    found = points(reader)

    assert found[key(names.RECORDS_INGESTED, **{"mutualis.tenant": "metropole"})] == 2
    assert found[key(names.INGESTED_SIZE, **{"mutualis.tenant": "metropole"})] == 1024


def test_fixity_failures_are_told_apart_from_successes(
    domain: DomainMetrics, reader: InMemoryMetricReader
) -> None:
    domain.fixity_checked("bordeaux", ok=True)
    domain.fixity_checked("bordeaux", ok=False)

    found = points(reader)

    assert found[key(names.FIXITY_CHECKS, **{"mutualis.tenant": "bordeaux", "outcome": "ok"})] == 1
    assert (
        found[key(names.FIXITY_CHECKS, **{"mutualis.tenant": "bordeaux", "outcome": "failed"})] == 1
    )


def test_notifications_are_counted_by_channel_and_status(
    domain: DomainMetrics, reader: InMemoryMetricReader
) -> None:
    domain.notification("bordeaux", "email", "sent")
    domain.notification("bordeaux", "email", "bounced")

    found = points(reader)

    common = {"mutualis.tenant": "bordeaux", "notification.channel": "email"}
    assert found[key(names.NOTIFICATIONS, **common, **{"notification.status": "sent"})] == 1
    assert found[key(names.NOTIFICATIONS, **common, **{"notification.status": "bounced"})] == 1


def test_timestamping_and_smtp_relays_report_their_outcome(
    domain: DomainMetrics, reader: InMemoryMetricReader
) -> None:
    domain.timestamp_requested("tsa.example.org", ok=False)
    domain.smtp_attempt("relay-2.example.org", "fallback", ok=True)

    found = points(reader)

    assert (
        found[
            key(
                names.TIMESTAMP_REQUESTS,
                **{"server.address": "tsa.example.org", "outcome": "failed"},
            )
        ]
        == 1
    )
    smtp = {"server.address": "relay-2.example.org", "smtp.relay.role": "fallback", "outcome": "ok"}
    assert found[key(names.SMTP_ATTEMPTS, **smtp)] == 1


def test_a_signing_certificate_reports_its_latest_end_of_validity(
    domain: DomainMetrics, reader: InMemoryMetricReader
) -> None:
    domain.signing_certificate("seal-bordeaux", "bordeaux", datetime(2027, 1, 1, tzinfo=UTC))
    domain.signing_certificate("seal-bordeaux", "bordeaux", datetime(2028, 1, 1, tzinfo=UTC))

    found = points(reader)

    attributes = {"certificate": "seal-bordeaux", "mutualis.tenant": "bordeaux"}
    assert (
        found[key(names.CERTIFICATE_NOT_AFTER, **attributes)]
        == datetime(2028, 1, 1, tzinfo=UTC).timestamp()
    )
