"""The names the rules and dashboards query are the names a Mutualis process really exposes.

A kernel process is run for real (kernel app, events published, consumed and dead-lettered
against a NATS server, every domain metric recorded) and its `/metrics` read: a renamed
instrument breaks this test instead of silently emptying a dashboard or an alert.
"""

import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from mutualis_kernel.runtime import LocalCluster

from . import promql

PROBE = Path(__file__).with_name("metrics_probe.py")

#: What the kernel promises (docs/observability.md lists them); the dashboards build on them.
KERNEL_SERIES = {
    "http_server_duration_milliseconds_bucket",
    "http_server_duration_milliseconds_count",
    "http_server_active_requests",
    "mutualis_events_published_total",
    "mutualis_events_publish_retries_total",
    "mutualis_events_consumed_total",
    "mutualis_events_redelivered_total",
    "mutualis_events_dead_lettered_total",
    "mutualis_events_handler_duration_seconds_bucket",
    "mutualis_signatures_applied_total",
    "mutualis_archive_records_ingested_total",
    "mutualis_archive_ingested_size_bytes_total",
    "mutualis_archive_fixity_checks_total",
    "mutualis_notifications_total",
    "mutualis_tsa_requests_total",
    "mutualis_smtp_attempts_total",
    "mutualis_signing_certificate_not_after_seconds",
    "mutualis_consumer_pending",
    "mutualis_consumer_ack_pending",
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
}


@pytest.fixture(scope="module")
def exposed(
    nats_single: LocalCluster, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, set[str]]:
    """Each series name the probe exposes -> the label names it carries."""
    scraped = tmp_path_factory.mktemp("probe") / "metrics.txt"
    run = subprocess.run(
        [sys.executable, str(PROBE), nats_single.client_urls[0], str(scraped)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    series: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(scraped.read_text()):
        for sample in family.samples:
            series.setdefault(sample.name, set()).update(sample.labels)
    return series


def test_a_kernel_process_exposes_every_metric_the_platform_relies_on(
    exposed: dict[str, set[str]],
) -> None:
    assert KERNEL_SERIES - exposed.keys() == set()


def test_the_labels_the_rules_group_by_are_the_labels_exposed(
    exposed: dict[str, set[str]],
) -> None:
    assert {"http_status_code", "http_target", "le"} <= exposed[
        "http_server_duration_milliseconds_bucket"
    ]
    assert "messaging_consumer_group_name" in exposed["mutualis_events_dead_lettered_total"]
    assert {"event_type", "mutualis_tenant"} <= exposed["mutualis_events_published_total"]
    assert {"mutualis_tenant", "outcome"} <= exposed["mutualis_archive_fixity_checks_total"]
    assert {"server_address", "outcome"} <= exposed["mutualis_tsa_requests_total"]
    assert {"server_address", "smtp_relay_role", "outcome"} <= exposed[
        "mutualis_smtp_attempts_total"
    ]
    assert {"certificate", "mutualis_tenant"} <= exposed[
        "mutualis_signing_certificate_not_after_seconds"
    ]
    assert {"messaging_destination_name", "messaging_consumer_group_name"} <= exposed[
        "mutualis_consumer_pending"
    ]


def test_every_metric_named_by_a_rule_or_a_dashboard_exists(
    exposed: dict[str, set[str]],
) -> None:
    known = (
        exposed.keys() | promql.exporter_names() | promql.recorded_names() | promql.BUILTIN_SERIES
    )
    used: dict[str, str] = {}
    for rule in promql.rules():
        for name in promql.metric_names(rule["expr"]):
            used.setdefault(name, f"rule {rule.get('alert') or rule.get('record')}")
    for board, title, expr in promql.dashboard_expressions():
        for name in promql.metric_names(expr):
            used.setdefault(name, f"{board}: {title}")

    unknown = {name: where for name, where in used.items() if name not in known}

    assert unknown == {}
