"""Journal seals feed the TSA alert: each timestamp request the archive makes is counted."""

from __future__ import annotations

import socket

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from archive.adapters.timestamper import RemoteTsa
from archive.service_layer.ports import TimestampRefused
from mutualis_kernel.metrics import TIMESTAMP_REQUESTS, DomainMetrics
from mutualis_trust.pki import DevPki
from mutualis_trust.testing import running_tsa


def requests_by_outcome(reader: InMemoryMetricReader) -> dict[str, int]:
    counted: dict[str, int] = {}
    data = reader.get_metrics_data()
    assert data is not None
    for resource_metrics in data.resource_metrics:
        for scope in resource_metrics.scope_metrics:
            for metric in scope.metrics:
                if metric.name != TIMESTAMP_REQUESTS:
                    continue
                for point in metric.data.data_points:
                    outcome = str((point.attributes or {})["outcome"])
                    counted[outcome] = int(point.value)  # type: ignore[union-attr]
    return counted


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_a_seal_timestamp_and_a_tsa_that_does_not_answer_are_both_counted(
    pki: DevPki,
) -> None:
    reader = InMemoryMetricReader()
    metrics = DomainMetrics(MeterProvider(metric_readers=[reader]).get_meter("test"))
    with running_tsa(pki) as url:
        tsa = RemoteTsa(url, pki.ca_pem_path, metrics=metrics)
        token = await tsa.timestamp(b"merkle root of the new entries")
        assert await tsa.verify(b"merkle root of the new entries", token) is None
    down = RemoteTsa(f"http://127.0.0.1:{closed_port()}/tsa", pki.ca_pem_path, metrics=metrics)
    with pytest.raises(TimestampRefused):
        await down.timestamp(b"another root")
    counted = requests_by_outcome(reader)
    assert counted.get("ok") == 1
    assert sum(n for outcome, n in counted.items() if outcome != "ok") == 1
