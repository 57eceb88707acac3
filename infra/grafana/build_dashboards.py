# ruff: noqa: E501  (PromQL queries read best on one line each)
"""Writes the Grafana dashboards of Mutualis (infra/grafana/dashboards/*.json).

The JSON is generated so that the nine service panels stay identical across services and a
query is written once. Edit this file, run it, commit both:

    .venv/bin/python infra/grafana/build_dashboards.py

Every expression uses the Prometheus names a Mutualis process really exposes or the
prometheus-nats-exporter's (infra/prometheus/exporter-metrics.txt); tests/infra parses each
one with promtool and checks the names.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OUT = Path(__file__).parent / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
SERVICES = ("identity", "parapheur", "archive", "notifications")
DC = 'datacenter=~"$datacenter"'

Panel = dict[str, Any]


def panel(
    title: str,
    *exprs: tuple[str, str],
    kind: str = "timeseries",
    unit: str = "short",
    width: int = 12,
    height: int = 8,
    description: str = "",
) -> Panel:
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "gridPos": {"w": width, "h": height},
        "targets": [
            {
                "refId": chr(ord("A") + i),
                "expr": expr,
                "legendFormat": legend,
                "datasource": DATASOURCE,
            }
            for i, (expr, legend) in enumerate(exprs)
        ],
    }


def row(title: str) -> Panel:
    return {
        "type": "row",
        "title": title,
        "collapsed": False,
        "gridPos": {"w": 24, "h": 1},
        "panels": [],
    }


def variable(name: str, query: str, *, multi: bool = True) -> dict[str, Any]:
    return {
        "name": name,
        "type": "query",
        "datasource": DATASOURCE,
        "refresh": 2,
        "query": {"query": query, "refId": name},
        "definition": query,
        "multi": multi,
        "includeAll": multi,
        "current": {},
        **({"allValue": ".*"} if multi else {}),
    }


DATASOURCE_VARIABLE = {
    "name": "datasource",
    "type": "datasource",
    "query": "prometheus",
    "current": {},
}


def dashboard(
    uid: str, title: str, panels: list[Panel], *, variables: list[dict[str, Any]], tags: list[str]
) -> dict[str, Any]:
    x = y = 0
    placed = []
    for index, item in enumerate(panels):
        grid = item["gridPos"]
        if x + grid["w"] > 24:
            x, y = 0, y + 8
        item = {**item, "id": index + 1, "gridPos": {**grid, "x": x, "y": y}}
        placed.append(item)
        x += grid["w"]
        if item["type"] == "row":
            x, y = 0, y + 1
    return {
        "uid": uid,
        "title": title,
        "tags": ["mutualis", *tags],
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "timezone": "browser",
        "templating": {"list": [DATASOURCE_VARIABLE, *variables]},
        "annotations": {"list": []},
        "panels": placed,
    }


def overview() -> dict[str, Any]:
    return dashboard(
        "mutualis-overview",
        "Mutualis / Platform overview",
        [
            row("Services"),
            panel(
                "Services up, per datacenter",
                (f'sum by (datacenter) (up{{job="mutualis",{DC}}})', "{{datacenter}}"),
                kind="stat",
                width=8,
            ),
            panel(
                "Firing alerts",
                ('count by (severity) (ALERTS{alertstate="firing"})', "{{severity}}"),
                kind="stat",
                width=8,
            ),
            panel(
                "Requests per second",
                (
                    f"sum by (datacenter) (datacenter_service:http_requests:rate5m{{{DC}}})",
                    "{{datacenter}}",
                ),
                kind="stat",
                unit="reqps",
                width=8,
            ),
            panel(
                "HTTP requests per second, per service and datacenter",
                (
                    f"sum by (service, datacenter) (rate(http_server_duration_milliseconds_count{{{DC}}}[$__rate_interval]))",
                    "{{service}} {{datacenter}}",
                ),
                unit="reqps",
            ),
            panel(
                "5xx ratio, per service",
                (
                    f'sum by (service) (rate(http_server_duration_milliseconds_count{{http_status_code=~"5..",{DC}}}[$__rate_interval])) / sum by (service) (rate(http_server_duration_milliseconds_count{{{DC}}}[$__rate_interval]))',
                    "{{service}}",
                ),
                unit="percentunit",
            ),
            panel(
                "p99 latency, per service",
                (
                    f"histogram_quantile(0.99, sum by (le, service) (rate(http_server_duration_milliseconds_bucket{{{DC}}}[$__rate_interval])))",
                    "{{service}}",
                ),
                unit="ms",
            ),
            panel(
                "Error budget left burning (1 h burn rate, 1 = on budget)",
                ("service:http_errors:ratio_rate1h / 0.005", "{{service}} errors"),
                ("service:http_slow:ratio_rate1h / 0.01", "{{service}} latency"),
            ),
            row("Events"),
            panel(
                "Events published per second, per type",
                (
                    f"sum by (event_type) (rate(mutualis_events_published_total{{{DC}}}[$__rate_interval]))",
                    "{{event_type}}",
                ),
                unit="ops",
            ),
            panel(
                "Events consumed per second, per consumer",
                (
                    f"sum by (messaging_consumer_group_name) (rate(mutualis_events_consumed_total{{{DC}}}[$__rate_interval]))",
                    "{{messaging_consumer_group_name}}",
                ),
                unit="ops",
            ),
            panel(
                "Redeliveries and dead letters per minute",
                (
                    f"sum by (messaging_consumer_group_name) (rate(mutualis_events_redelivered_total{{{DC}}}[$__rate_interval])) * 60",
                    "redelivered {{messaging_consumer_group_name}}",
                ),
                (
                    f"sum by (messaging_consumer_group_name) (rate(mutualis_events_dead_lettered_total{{{DC}}}[$__rate_interval])) * 60",
                    "dead-lettered {{messaging_consumer_group_name}}",
                ),
            ),
            panel(
                "Consumer lag (events waiting)",
                (
                    "max by (messaging_consumer_group_name) (mutualis_consumer_pending)",
                    "{{messaging_consumer_group_name}}",
                ),
            ),
            row("The communes' work"),
            panel(
                "Signatures applied per hour, per level",
                (
                    f"sum by (signature_level) (rate(mutualis_signatures_applied_total{{{DC}}}[$__rate_interval])) * 3600",
                    "{{signature_level}}",
                ),
                width=8,
            ),
            panel(
                "Records archived per hour",
                (
                    f"sum (rate(mutualis_archive_records_ingested_total{{{DC}}}[$__rate_interval])) * 3600",
                    "records",
                ),
                width=8,
            ),
            panel(
                "Notifications per hour, per status",
                (
                    f"sum by (notification_status) (rate(mutualis_notifications_total{{{DC}}}[$__rate_interval])) * 3600",
                    "{{notification_status}}",
                ),
                width=8,
            ),
        ],
        variables=[variable("datacenter", 'label_values(up{job="mutualis"}, datacenter)')],
        tags=["overview"],
    )


def service_dashboard(service: str) -> dict[str, Any]:
    sel = f'service="{service}",{DC}'
    panels: list[Panel] = [
        row("HTTP"),
        panel(
            "Requests per second, per route",
            (
                f"sum by (http_target, http_method) (rate(http_server_duration_milliseconds_count{{{sel}}}[$__rate_interval]))",
                "{{http_method}} {{http_target}}",
            ),
            unit="reqps",
        ),
        panel(
            "Responses per second, per status",
            (
                f"sum by (http_status_code) (rate(http_server_duration_milliseconds_count{{{sel}}}[$__rate_interval]))",
                "{{http_status_code}}",
            ),
            unit="reqps",
        ),
        panel(
            "Latency p50 / p99",
            (
                f"histogram_quantile(0.5, sum by (le) (rate(http_server_duration_milliseconds_bucket{{{sel}}}[$__rate_interval])))",
                "p50",
            ),
            (
                f"histogram_quantile(0.99, sum by (le) (rate(http_server_duration_milliseconds_bucket{{{sel}}}[$__rate_interval])))",
                "p99",
            ),
            unit="ms",
        ),
        panel(
            "In-flight requests, per datacenter",
            (f"sum by (datacenter) (http_server_active_requests{{{sel}}})", "{{datacenter}}"),
        ),
        row("Events"),
        panel(
            "Published per second, per type",
            (
                f"sum by (event_type) (rate(mutualis_events_published_total{{{sel}}}[$__rate_interval]))",
                "{{event_type}}",
            ),
            unit="ops",
        ),
        panel(
            "Publish retries per second",
            (
                f"sum by (event_type) (rate(mutualis_events_publish_retries_total{{{sel}}}[$__rate_interval]))",
                "{{event_type}}",
            ),
            unit="ops",
        ),
        panel(
            "Consumed per second, per consumer",
            (
                f"sum by (messaging_consumer_group_name) (rate(mutualis_events_consumed_total{{{sel}}}[$__rate_interval]))",
                "{{messaging_consumer_group_name}}",
            ),
            unit="ops",
        ),
        panel(
            "Handler duration p99, per consumer",
            (
                f"histogram_quantile(0.99, sum by (le, messaging_consumer_group_name) (rate(mutualis_events_handler_duration_seconds_bucket{{{sel}}}[$__rate_interval])))",
                "{{messaging_consumer_group_name}}",
            ),
            unit="s",
        ),
        panel(
            "Redelivered and dead-lettered per minute",
            (
                f"sum by (messaging_consumer_group_name) (rate(mutualis_events_redelivered_total{{{sel}}}[$__rate_interval])) * 60",
                "redelivered {{messaging_consumer_group_name}}",
            ),
            (
                f"sum by (messaging_consumer_group_name) (rate(mutualis_events_dead_lettered_total{{{sel}}}[$__rate_interval])) * 60",
                "dead-lettered {{messaging_consumer_group_name}}",
            ),
        ),
        panel(
            "Consumer lag: waiting / unacknowledged",
            (
                f"max by (messaging_consumer_group_name) (mutualis_consumer_pending{{{sel}}})",
                "waiting {{messaging_consumer_group_name}}",
            ),
            (
                f"max by (messaging_consumer_group_name) (mutualis_consumer_ack_pending{{{sel}}})",
                "unacked {{messaging_consumer_group_name}}",
            ),
        ),
    ]
    domain: dict[str, list[Panel]] = {
        "parapheur": [
            panel(
                "Signatures applied per hour, per tenant and level",
                (
                    f"sum by (mutualis_tenant, signature_level) (rate(mutualis_signatures_applied_total{{{sel}}}[$__rate_interval])) * 3600",
                    "{{mutualis_tenant}} {{signature_level}}",
                ),
            ),
            panel(
                "Timestamp requests per minute, per TSA and outcome",
                (
                    f"sum by (server_address, outcome) (rate(mutualis_tsa_requests_total{{{sel}}}[$__rate_interval])) * 60",
                    "{{server_address}} {{outcome}}",
                ),
            ),
            panel(
                "Days left on signing certificates",
                (
                    f"min by (certificate, mutualis_tenant) (mutualis_signing_certificate_not_after_seconds{{{sel}}}) - time()",
                    "{{certificate}} ({{mutualis_tenant}})",
                ),
                kind="bargauge",
                unit="s",
                width=24,
            ),
        ],
        "archive": [
            panel(
                "Records archived per hour, per tenant",
                (
                    f"sum by (mutualis_tenant) (rate(mutualis_archive_records_ingested_total{{{sel}}}[$__rate_interval])) * 3600",
                    "{{mutualis_tenant}}",
                ),
                width=8,
            ),
            panel(
                "Bytes archived per second",
                (
                    f"sum (rate(mutualis_archive_ingested_size_bytes_total{{{sel}}}[$__rate_interval]))",
                    "bytes",
                ),
                unit="Bps",
                width=8,
            ),
            panel(
                "Fixity checks per hour, per outcome",
                (
                    f"sum by (outcome) (rate(mutualis_archive_fixity_checks_total{{{sel}}}[$__rate_interval])) * 3600",
                    "{{outcome}}",
                ),
                width=8,
            ),
            panel(
                "Timestamp requests per minute (journal seals)",
                (
                    f"sum by (server_address, outcome) (rate(mutualis_tsa_requests_total{{{sel}}}[$__rate_interval])) * 60",
                    "{{server_address}} {{outcome}}",
                ),
                width=24,
            ),
        ],
        "notifications": [
            panel(
                "Notifications per hour, per channel and status",
                (
                    f"sum by (notification_channel, notification_status) (rate(mutualis_notifications_total{{{sel}}}[$__rate_interval])) * 3600",
                    "{{notification_channel}} {{notification_status}}",
                ),
            ),
            panel(
                "SMTP attempts per minute, per relay and outcome",
                (
                    f"sum by (server_address, smtp_relay_role, outcome) (rate(mutualis_smtp_attempts_total{{{sel}}}[$__rate_interval])) * 60",
                    "{{server_address}} ({{smtp_relay_role}}) {{outcome}}",
                ),
            ),
        ],
        "identity": [],
    }
    process = [
        row("Process"),
        panel(
            "CPU seconds per second, per datacenter",
            (
                f"sum by (datacenter) (rate(process_cpu_seconds_total{{{sel}}}[$__rate_interval]))",
                "{{datacenter}}",
            ),
            width=12,
        ),
        panel(
            "Resident memory, per datacenter",
            (f"sum by (datacenter) (process_resident_memory_bytes{{{sel}}})", "{{datacenter}}"),
            unit="bytes",
            width=12,
        ),
    ]
    extra = [row("Domain"), *domain[service]] if domain[service] else []
    return dashboard(
        f"mutualis-{service}",
        f"Mutualis / Service: {service}",
        [*panels, *extra, *process],
        variables=[
            variable(
                "datacenter", f'label_values(up{{job="mutualis",service="{service}"}}, datacenter)'
            )
        ],
        tags=["service", service],
    )


def nats() -> dict[str, Any]:
    return dashboard(
        "mutualis-nats",
        "Mutualis / NATS and JetStream",
        [
            row("Servers"),
            panel(
                "Servers healthy (/healthz ok), per datacenter",
                (f"count by (datacenter) (gnatsd_healthz_status{{{DC}}} == 0)", "{{datacenter}}"),
                kind="stat",
                width=8,
            ),
            panel(
                "Meta leader",
                ("max by (meta_leader) (jetstream_server_total_streams)", "{{meta_leader}}"),
                kind="stat",
                width=8,
            ),
            panel(
                "Client connections, per server",
                (
                    f"sum by (server_id, datacenter) (gnatsd_varz_connections{{{DC}}})",
                    "{{datacenter}} {{server_id}}",
                ),
                width=8,
            ),
            panel(
                "Messages in / out per second, per datacenter",
                (
                    f"sum by (datacenter) (rate(gnatsd_varz_in_msgs{{{DC}}}[$__rate_interval]))",
                    "in {{datacenter}}",
                ),
                (
                    f"sum by (datacenter) (rate(gnatsd_varz_out_msgs{{{DC}}}[$__rate_interval]))",
                    "out {{datacenter}}",
                ),
                unit="ops",
            ),
            panel(
                "JetStream storage used, per server",
                (
                    f"max by (server_name, datacenter) (jetstream_server_total_message_bytes{{{DC}}}) / max by (server_name, datacenter) (jetstream_server_max_storage{{{DC}}})",
                    "{{datacenter}} {{server_name}}",
                ),
                unit="percentunit",
            ),
            row("Streams"),
            panel(
                "Messages per stream (leader's view)",
                (
                    'max by (stream_name) (jetstream_stream_total_messages{is_stream_leader="true"})',
                    "{{stream_name}}",
                ),
            ),
            panel(
                "Bytes per stream (leader's view)",
                (
                    'max by (stream_name) (jetstream_stream_total_bytes{is_stream_leader="true"})',
                    "{{stream_name}}",
                ),
                unit="bytes",
            ),
            panel(
                "Dead letters stored",
                (
                    'max (jetstream_stream_total_messages{stream_name="DEAD_LETTERS",is_stream_leader="true"})',
                    "DEAD_LETTERS",
                ),
                kind="stat",
                width=8,
            ),
            panel(
                "Consumers: pending, per consumer",
                (
                    'max by (stream_name, consumer_name) (jetstream_consumer_num_pending{is_consumer_leader="true"})',
                    "{{stream_name}} / {{consumer_name}}",
                ),
                width=8,
            ),
            panel(
                "Consumers: unacknowledged and redelivered",
                (
                    'max by (consumer_name) (jetstream_consumer_num_ack_pending{is_consumer_leader="true"})',
                    "unacked {{consumer_name}}",
                ),
                (
                    'max by (consumer_name) (jetstream_consumer_num_redelivered{is_consumer_leader="true"})',
                    "redelivered {{consumer_name}}",
                ),
                width=8,
            ),
        ],
        variables=[variable("datacenter", 'label_values(up{job="nats"}, datacenter)')],
        tags=["nats"],
    )


LAG = (
    'max by (stream_name) (jetstream_stream_last_seq{is_stream_leader="true"}) '
    "- on (stream_name) group_right "
    "max by (stream_name, server_name, datacenter) (jetstream_stream_last_seq)"
)


def continuity() -> dict[str, Any]:
    return dashboard(
        "mutualis-continuity",
        "Mutualis / Continuity (datacenters)",
        [
            row("Where the leaders are"),
            panel(
                "Stream leaders per datacenter",
                (
                    'count by (datacenter) (jetstream_stream_last_seq{is_stream_leader="true"})',
                    "{{datacenter}}",
                ),
                kind="bargauge",
                width=8,
                description="All leaders in one datacenter means losing it stalls every write for an election.",
            ),
            panel(
                "Consumer leaders per datacenter",
                (
                    'count by (datacenter) (jetstream_consumer_num_pending{is_consumer_leader="true"})',
                    "{{datacenter}}",
                ),
                kind="bargauge",
                width=8,
            ),
            panel(
                "Streams without a leader",
                (
                    'count by (stream_name) (jetstream_stream_last_seq{stream_leader=""}) or vector(0)',
                    "{{stream_name}}",
                ),
                kind="stat",
                width=8,
            ),
            panel(
                "Leader of each stream",
                (
                    'max by (stream_name, server_name, datacenter) (jetstream_stream_last_seq{is_stream_leader="true"})',
                    "{{stream_name}}: {{server_name}} ({{datacenter}})",
                ),
                kind="table",
                width=24,
            ),
            row("Replicas"),
            panel(
                "Replicas reporting per stream (3 expected)",
                ("count by (stream_name) (jetstream_stream_last_seq)", "{{stream_name}}"),
                kind="bargauge",
                width=12,
            ),
            panel(
                "Replicas current / lagging (> 1000 behind)",
                (f"count(({LAG}) <= 1000)", "current"),
                (f"count(({LAG}) > 1000)", "lagging"),
                kind="stat",
                width=12,
            ),
            panel(
                "Messages behind the leader, per replica",
                (LAG, "{{stream_name}} on {{server_name}} ({{datacenter}})"),
                width=24,
            ),
            row("Service in each datacenter"),
            panel(
                "Requests per second served, per datacenter",
                ("sum by (datacenter) (datacenter_service:http_requests:rate5m)", "{{datacenter}}"),
                unit="reqps",
            ),
            panel(
                "Events consumed per second, per datacenter",
                (
                    "sum by (datacenter) (datacenter_service:events_consumed:rate5m)",
                    "{{datacenter}}",
                ),
                unit="ops",
            ),
        ],
        variables=[],
        tags=["continuity", "nats"],
    )


def main() -> None:
    OUT.mkdir(exist_ok=True)
    boards = {"platform-overview": overview(), "nats-jetstream": nats(), "continuity": continuity()}
    boards.update({f"service-{name}": service_dashboard(name) for name in SERVICES})
    for name, board in boards.items():
        (OUT / f"{name}.json").write_text(json.dumps(board, indent=2) + "\n")


if __name__ == "__main__":
    main()
