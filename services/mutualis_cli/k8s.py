"""`mutualis k8s`: the platform as an operator sees it on Kubernetes.

Owns two commands built on the official `kubernetes` client:
- `status`: every service's pods per zone (datacenter), the NATS pods, and readiness;
- `drill --kill-zone Z` (also `mutualis drill --kubernetes --kill-zone Z`): deletes every
  Mutualis and NATS pod of one zone, then measures how long until every service answers from
  the remaining zones and until the zone is whole again, in the local drill's report layout
  (fault, timeline, targets) without what needs a workload (loss, duplicates, requests);
- `nats-values`, `nats-credentials` (mutualis_cli.k8s_nats): NATS identities for the chart.

It reads and deletes pods only; it never edits Deployments, StatefulSets or Helm releases.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from kubernetes import client as k8s
from kubernetes import config as kubeconfig
from pydantic import BaseModel, Field
from rich.console import Console
from rich.table import Table

from mutualis_cli.k8s_nats import nats_credentials_command, nats_values_command
from mutualis_cli.options import JsonOutput
from mutualis_kernel.service import installed_service_names

ZONE_LABEL = "topology.kubernetes.io/zone"
UNKNOWN_ZONE = "?"


# -- what is observed -----------------------------------------------------------------------
class PodState(BaseModel):
    name: str
    uid: str
    #: The Mutualis service, or "nats" for a NATS server.
    role: str
    zone: str
    node: str | None
    phase: str
    ready: bool


class ClusterReport(BaseModel):
    namespace: str
    release: str
    zones: list[str]
    pods: list[PodState]
    #: service -> zone -> ready pods / pods
    services: dict[str, dict[str, str]]
    #: Services present in the release with no ready pod in some zone.
    missing: dict[str, list[str]]
    nats_ready: int
    nats_total: int
    healthy: bool


def _ready(pod: k8s.V1Pod) -> bool:
    conditions = (pod.status.conditions if pod.status else None) or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def _node_zones(core: k8s.CoreV1Api) -> dict[str, str]:
    zones: dict[str, str] = {}
    for node in core.list_node().items:
        meta = node.metadata or k8s.V1ObjectMeta()
        zones[meta.name or ""] = (meta.labels or {}).get(ZONE_LABEL, UNKNOWN_ZONE)
    return zones


def observe(core: k8s.CoreV1Api, namespace: str, release: str) -> ClusterReport:
    """One look at the release's pods and the nodes' zones."""
    zones_of_nodes = _node_zones(core)
    selectors = {
        "service": f"app.kubernetes.io/part-of=mutualis,app.kubernetes.io/instance={release}",
        "nats": f"app.kubernetes.io/name=nats,app.kubernetes.io/instance={release}",
    }
    pods: list[PodState] = []
    for kind, selector in selectors.items():
        for pod in core.list_namespaced_pod(namespace, label_selector=selector).items:
            meta = pod.metadata or k8s.V1ObjectMeta()
            labels = meta.labels or {}
            node = pod.spec.node_name if pod.spec else None
            zone = zones_of_nodes.get(node or "", labels.get(ZONE_LABEL, UNKNOWN_ZONE))
            role = "nats" if kind == "nats" else labels.get("app.kubernetes.io/name", "?")
            if kind == "nats" and labels.get("app.kubernetes.io/component", "nats") != "nats":
                continue  # nats-box and other helpers of the NATS chart
            pods.append(
                PodState(
                    name=meta.name or "",
                    uid=meta.uid or "",
                    role=role,
                    zone=zone,
                    node=node,
                    phase=(pod.status.phase if pod.status else None) or "Unknown",
                    ready=_ready(pod) and meta.deletion_timestamp is None,
                )
            )
    zones = sorted({z for z in zones_of_nodes.values() if z != UNKNOWN_ZONE})
    return _summarise(namespace, release, zones, pods)


def _summarise(
    namespace: str, release: str, zones: list[str], pods: list[PodState]
) -> ClusterReport:
    present = [s for s in installed_service_names() if any(p.role == s for p in pods)]
    services: dict[str, dict[str, str]] = {}
    missing: dict[str, list[str]] = {}
    for service in present:
        row: dict[str, str] = {}
        for zone in zones:
            here = [p for p in pods if p.role == service and p.zone == zone]
            row[zone] = f"{sum(p.ready for p in here)}/{len(here)}"
            if not any(p.ready for p in here):
                missing.setdefault(service, []).append(zone)
        services[service] = row
    nats = [p for p in pods if p.role == "nats"]
    nats_ready = sum(p.ready for p in nats)
    return ClusterReport(
        namespace=namespace,
        release=release,
        zones=zones,
        pods=pods,
        services=services,
        missing=missing,
        nats_ready=nats_ready,
        nats_total=len(nats),
        healthy=bool(present) and not missing and nats_ready == len(nats),
    )


def render_status(report: ClusterReport, console: Console) -> None:
    table = Table(title=f"release {report.release} in {report.namespace} (ready/pods per zone)")
    table.add_column("service")
    for zone in report.zones:
        table.add_column(zone, justify="right")
    for service, row in report.services.items():
        cells = [
            f"[red]{row[z]}[/]" if z in report.missing.get(service, []) else row[z]
            for z in report.zones
        ]
        table.add_row(service, *cells)
    nats_row = []
    for zone in report.zones:
        here = [p for p in report.pods if p.role == "nats" and p.zone == zone]
        nats_row.append(f"{sum(p.ready for p in here)}/{len(here)}")
    table.add_row("nats", *nats_row)
    console.print(table)
    verdict = "[green]healthy[/]" if report.healthy else "[red]degraded[/]"
    console.print(f"NATS {report.nats_ready}/{report.nats_total} ready; platform {verdict}")
    for service, zones in report.missing.items():
        console.print(f"  {service}: no ready pod in {', '.join(zones)}")


# -- the zone drill -------------------------------------------------------------------------
#: Issue 8's target for a crash, as in the local drill: an election plus a second.
RTO_TARGET_S = 8.0
#: What the local drill (`mutualis drill --kill DC`) measures that this one cannot: it runs
#: no workload, so it sees pods and readiness, never a request or an event.
NOT_MEASURED = {
    "acknowledged_but_lost": "no workload runs: nothing is acknowledged, so nothing can be lost",
    "duplicates": "no workload runs: no signature, record or email to count twice",
    "journeys": "no journeys run; run `mutualis demo` against the ingress alongside to see them",
    "slowest_requests": "no request is timed; the outage is measured on ready pods instead",
    "catch_up_s": "stream replicas are not inspected; `nats stream report` shows their lag",
}


class TimelineEvent(BaseModel):
    at_s: float
    what: str


class DrillReport(BaseModel):
    fault: str
    platform: str = "kubernetes"
    zone: str
    namespace: str
    release: str
    deleted: list[str]
    #: Seconds from the deletion until every service had a ready pod outside the zone.
    services_available_after_s: float | None
    #: Seconds from the deletion until the zone ran ready pods of every service and NATS again.
    zone_recovered_after_s: float | None
    #: Longest stretch (seconds) during which some service had no ready pod anywhere.
    longest_outage_s: float = 0.0
    outages: dict[str, float] = Field(default_factory=dict)
    #: What happened when, in seconds from the deletion (as the local drill's timeline).
    timeline: list[TimelineEvent] = Field(default_factory=list)
    #: Targets reported met or not, as the local drill's; only `ok` decides the exit code.
    targets: dict[str, bool] = Field(default_factory=dict)
    not_measured: dict[str, str] = Field(default_factory=lambda: dict(NOT_MEASURED))
    before: ClusterReport
    after: ClusterReport
    ok: bool


class DrillRefused(RuntimeError):
    pass


def kill_zone(
    core: k8s.CoreV1Api,
    namespace: str,
    release: str,
    zone: str,
    *,
    timeout_s: float = 600.0,
    poll_s: float = 2.0,
    grace_period_s: int | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> DrillReport:
    """Delete the release's pods in `zone`, then watch the platform until it is whole again."""
    before = observe(core, namespace, release)
    if zone not in before.zones:
        raise DrillRefused(f"no node in zone {zone!r} (zones: {', '.join(before.zones)})")
    if not before.healthy:
        raise DrillRefused("the platform is already degraded; run `mutualis k8s status` first")
    victims = [p for p in before.pods if p.zone == zone]
    start = clock()
    timeline: list[TimelineEvent] = []

    def mark(at: float, what: str) -> None:
        timeline.append(TimelineEvent(at_s=round(at - start, 3), what=what))

    for pod in victims:
        # None keeps each pod's own terminationGracePeriodSeconds (the NATS drain).
        core.delete_namespaced_pod(pod.name, namespace, grace_period_seconds=grace_period_s)
    mark(clock(), f"deleted {len(victims)} pods in zone {zone}")
    killed = {p.uid for p in victims}
    services = list(before.services)
    available_at: float | None = None
    recovered_at: float | None = None
    outage_started: dict[str, float] = {}
    outages: dict[str, float] = {}
    after = before
    while clock() - start <= timeout_s:
        now = clock()
        after = observe(core, namespace, release)
        live = [p for p in after.pods if p.uid not in killed]
        for service in services:
            up_anywhere = any(p.ready and p.role == service for p in live)
            if not up_anywhere and service not in outage_started:
                outage_started[service] = now
                mark(now, f"{service} has no ready pod anywhere")
            elif up_anywhere and service in outage_started:
                began = outage_started.pop(service)
                outages[service] = max(outages.get(service, 0.0), now - began)
                mark(now, f"{service} ready again after {now - began:.1f} s")
        elsewhere = all(
            any(p.ready and p.role == s and p.zone != zone for p in live) for s in services
        )
        if available_at is None and elsewhere:
            available_at = now - start
            mark(now, f"every service ready outside {zone}")
        back = all(any(p.ready and p.role == s and p.zone == zone for p in live) for s in services)
        nats_back = sum(1 for p in live if p.role == "nats" and p.zone == zone and p.ready) >= sum(
            1 for p in victims if p.role == "nats"
        )
        if available_at is not None and back and nats_back and after.healthy:
            recovered_at = now - start
            mark(now, f"zone {zone} whole again")
            break
        sleep(poll_s)
    if recovered_at is None:
        mark(clock(), f"gave up after {timeout_s:.0f} s: zone {zone} not whole again")
    for service, began in outage_started.items():
        outages[service] = max(outages.get(service, 0.0), clock() - began)
    longest = max(outages.values(), default=0.0)
    return DrillReport(
        fault=f"--kill-zone {zone}",
        zone=zone,
        namespace=namespace,
        release=release,
        deleted=[p.name for p in victims],
        services_available_after_s=available_at,
        zone_recovered_after_s=recovered_at,
        longest_outage_s=longest,
        outages=outages,
        timeline=timeline,
        targets={
            "no_service_outage": not outages,
            f"rto_below_{RTO_TARGET_S:g}s": longest <= RTO_TARGET_S,
            "zone_recovered": recovered_at is not None,
        },
        before=before,
        after=after,
        ok=recovered_at is not None,
    )


def render_drill(report: DrillReport, console: Console) -> None:
    """The local drill's layout: the fault, what was measured, the timeline, the targets."""

    def seconds(value: float | None) -> str:
        return "not within the timeout" if value is None else f"{value:.2f}s"

    outage = (
        "none: every service always had a ready pod somewhere"
        if not report.outages
        else f"{report.longest_outage_s:.2f}s with no ready pod anywhere ("
        + ", ".join(f"{s} {d:.2f}s" for s, d in report.outages.items())
        + ")"
    )
    lines = [
        f"fault                 {report.fault} ({len(report.deleted)} pods deleted: "
        f"every Mutualis and NATS pod of the zone)",
        f"platform              kubernetes, release {report.release} in {report.namespace}",
        f"services elsewhere    every service ready outside {report.zone} after "
        f"{seconds(report.services_available_after_s)}",
        f"longest outage        {outage}",
        f"zone whole again      {seconds(report.zone_recovered_after_s)}",
        "not measured          "
        + ", ".join(report.not_measured)
        + " (no workload runs; see docs/deploy.md)",
    ]
    console.print()
    for line in lines:
        console.print(f"  {line}", soft_wrap=True)
    console.print()
    for event in report.timeline:
        console.print(f"  [dim]{event.at_s:7.2f}s[/] {event.what}", soft_wrap=True)
    console.print()
    for target, met in report.targets.items():
        console.print(f"  target {target:<26} {'[green]met[/]' if met else '[red]not met[/]'}")
    console.print()
    render_status(report.after, console)
    console.print("[green]recovered[/]" if report.ok else "[red]not recovered[/]")


# -- connecting -----------------------------------------------------------------------------
def core_api(context: str | None = None, server: str | None = None) -> k8s.CoreV1Api:
    """A CoreV1Api: `server` (e.g. from `kubectl proxy`), else in-cluster, else kubeconfig."""
    if server:
        configuration = k8s.Configuration(host=server.rstrip("/"))
        return k8s.CoreV1Api(k8s.ApiClient(configuration))
    try:
        kubeconfig.load_incluster_config()  # type: ignore[no-untyped-call]
    except kubeconfig.ConfigException:
        kubeconfig.load_kube_config(context=context)  # type: ignore[no-untyped-call]
    return k8s.CoreV1Api()


# -- commands -------------------------------------------------------------------------------
k8s_app = typer.Typer(
    help="The platform on Kubernetes: status per zone, zone-loss drills, NATS identities.",
    no_args_is_help=True,
)
k8s_app.command("nats-values")(nats_values_command)
k8s_app.command("nats-credentials")(nats_credentials_command)
console = Console(highlight=False)
errors = Console(stderr=True, highlight=False)

Namespace = Annotated[str, typer.Option("--namespace", "-n", help="Namespace of the release.")]
Release = Annotated[str, typer.Option(help="Helm release name.")]
Context = Annotated[str | None, typer.Option(help="kubeconfig context (default: current).")]
Server = Annotated[
    str | None,
    typer.Option(
        help="API server URL without kubeconfig, e.g. http://127.0.0.1:8001 from `kubectl proxy`."
    ),
]


def _api_failure(error: Exception) -> typer.Exit:
    errors.print(f"[red]error:[/] Kubernetes API: {error}", soft_wrap=True)
    return typer.Exit(1)


@k8s_app.command("status")
def status_command(
    namespace: Namespace = "mutualis",
    release: Release = "mutualis",
    context: Context = None,
    server: Server = None,
    as_json: JsonOutput = False,
) -> None:
    """Pods of every service per zone, NATS pods, readiness. Exit 1 unless all is ready."""
    try:
        report = observe(core_api(context, server), namespace, release)
    except (k8s.ApiException, kubeconfig.ConfigException, OSError) as error:
        raise _api_failure(error) from None
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
    else:
        render_status(report, console)
    if not report.healthy:
        raise typer.Exit(1)


Yes = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
DrillTimeout = Annotated[
    float, typer.Option(min=1, help="Give up when the zone is not whole after this many seconds.")
]
DrillPoll = Annotated[float, typer.Option(min=0, help="Seconds between two looks at the pods.")]


def run_zone_drill(
    zone: str,
    *,
    namespace: str = "mutualis",
    release: str = "mutualis",
    context: str | None = None,
    server: str | None = None,
    timeout: float = 600,
    poll: float = 2.0,
    grace_period: int | None = None,
    yes: bool = False,
    print_json: bool = False,
    json_file: Path | None = None,
) -> None:
    """Both entry points (`mutualis k8s drill`, `mutualis drill --kubernetes`): confirm, drill,
    report; exit 1 when the zone did not recover or the drill was refused."""
    if not yes:
        typer.confirm(f"delete every pod of release {release} in zone {zone}?", abort=True)
    try:
        report = kill_zone(
            core_api(context, server),
            namespace,
            release,
            zone,
            timeout_s=timeout,
            poll_s=poll,
            grace_period_s=grace_period,
        )
    except DrillRefused as error:
        errors.print(f"[red]error:[/] {error}", soft_wrap=True)
        raise typer.Exit(1) from None
    except (k8s.ApiException, kubeconfig.ConfigException, OSError) as error:
        raise _api_failure(error) from None
    if print_json:
        typer.echo(report.model_dump_json(indent=2))
    else:
        render_drill(report, console)
    if json_file is not None:
        json_file.parent.mkdir(parents=True, exist_ok=True)
        json_file.write_text(report.model_dump_json(indent=2) + "\n")
        if not print_json:
            console.print(f"\n  report written to {json_file}", soft_wrap=True)
    if not report.ok:
        raise typer.Exit(1)


@k8s_app.command("drill")
def drill_command(
    kill_zone_name: Annotated[
        str, typer.Option("--kill-zone", help="Zone (datacenter) whose pods are deleted.")
    ],
    namespace: Namespace = "mutualis",
    release: Release = "mutualis",
    context: Context = None,
    server: Server = None,
    timeout: DrillTimeout = 600,
    poll: DrillPoll = 2.0,
    grace_period: Annotated[
        int | None, typer.Option(min=0, help="Deletion grace period (default: the pod's).")
    ] = None,
    yes: Yes = False,
    as_json: JsonOutput = False,
) -> None:
    """Delete every Mutualis and NATS pod of one zone and measure the recovery.

    The same as `mutualis drill --kubernetes --kill-zone ZONE`. Exit 0 when every service
    stayed or came back ready and the zone is whole again.
    """
    run_zone_drill(
        kill_zone_name,
        namespace=namespace,
        release=release,
        context=context,
        server=server,
        timeout=timeout,
        poll=poll,
        grace_period=grace_period,
        yes=yes,
        print_json=as_json,
    )
