"""`mutualis status`: what runs, what is healthy, where every stream leads, what lags.

Each part is gathered on its own and a failure becomes a field of the report ("down",
"unreachable", an error string), never an exception: status is what an operator runs when
things are broken, so it must work with a datacenter dead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import httpx
from nats.js import JetStreamContext
from nats.js.api import StreamInfo
from pydantic import BaseModel, Field
from rich.console import Console
from rich.table import Table

from mutualis_cli.rundir import NodeState, RunState, ServiceState
from mutualis_cli.supervisor import process_alive
from mutualis_cli.target import NoTarget, connect
from mutualis_kernel.bus.deadletter import DEAD_LETTER_PREFIX
from mutualis_kernel.streams import DEAD_LETTER_STREAM

HTTP_TIMEOUT_S = 1.5
JS_TIMEOUT_S = 3.0


class NodeStatus(BaseModel):
    name: str
    datacenter: str
    client_url: str
    monitor_url: str
    pid: int | None
    process_alive: bool | None
    healthy: bool


class ReplicaStatus(BaseModel):
    server: str
    datacenter: str | None
    current: bool | None = None
    offline: bool | None = None
    lag: int | None = None


class ConsumerStatus(BaseModel):
    name: str
    num_pending: int
    num_ack_pending: int
    num_redelivered: int
    #: what the consumer still has to finish: not yet delivered plus delivered but unacked
    lag: int


class StreamStatus(BaseModel):
    name: str
    subjects: list[str]
    replicas: int
    messages: int
    bytes: int
    leader: str | None
    leader_datacenter: str | None
    peers: list[ReplicaStatus]
    datacenters: list[str]
    consumers: list[ConsumerStatus] = Field(default_factory=list)
    consumers_error: str | None = None


class ServiceStatus(BaseModel):
    name: str
    datacenter: str
    url: str
    pid: int | None
    process_alive: bool | None
    ready: bool


class StatusReport(BaseModel):
    run_dir: str
    nats_urls: list[str]
    nodes: list[NodeStatus] = Field(default_factory=list)
    meta_leader: str | None = None
    meta_leader_datacenter: str | None = None
    jetstream_error: str | None = None
    streams: list[StreamStatus] = Field(default_factory=list)
    #: consumer durable -> number of dead letters waiting for it
    dead_letters: dict[str, int] = Field(default_factory=dict)
    services: list[ServiceStatus] = Field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return (
            all(n.healthy for n in self.nodes)
            and self.jetstream_error is None
            and all(s.ready for s in self.services)
        )


async def gather_status(run_dir: str, urls: list[str], state: RunState | None) -> StatusReport:
    report = StatusReport(run_dir=run_dir, nats_urls=urls)
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_S) as http:
        if state is not None:
            report.nodes = list(await asyncio.gather(*(_node(http, n) for n in state.nodes)))
            report.meta_leader = await _meta_leader(http, state)
            report.meta_leader_datacenter = _datacenter(state, report.meta_leader)
            report.services = list(
                await asyncio.gather(*(_service(http, s) for s in state.services))
            )
    try:
        nc = await connect(urls)
    except NoTarget as error:
        report.jetstream_error = str(error)
        return report
    try:
        js = nc.jetstream(timeout=JS_TIMEOUT_S)
        try:
            infos = await js.streams_info()
        except Exception as error:  # noqa: BLE001 — any API failure is a fact to report
            report.jetstream_error = f"stream list failed: {error!r}"
            return report
        for info in sorted(infos, key=lambda i: i.config.name or ""):
            report.streams.append(await _stream(js, info, state))
        if any(s.name == DEAD_LETTER_STREAM for s in report.streams):
            report.dead_letters = await dead_letter_counts(js)
    finally:
        await nc.close()
    return report


async def _node(http: httpx.AsyncClient, node: NodeState) -> NodeStatus:
    try:
        healthy = (await http.get(f"{node.monitor_url}/healthz")).status_code == 200
    except httpx.HTTPError:
        healthy = False
    return NodeStatus(
        name=node.name,
        datacenter=node.datacenter,
        client_url=node.client_url,
        monitor_url=node.monitor_url,
        pid=node.pid,
        process_alive=process_alive(node.pid) if node.pid else None,
        healthy=healthy,
    )


async def _meta_leader(http: httpx.AsyncClient, state: RunState) -> str | None:
    """The meta leader as the first live node sees it (a single node leads itself)."""
    for node in state.nodes:
        try:
            response = await http.get(f"{node.monitor_url}/jsz")
            jsz = response.json()
        except (httpx.HTTPError, ValueError):
            continue
        meta = jsz.get("meta_cluster") if isinstance(jsz, dict) else None
        if isinstance(meta, dict) and meta.get("leader"):
            return str(meta["leader"])
        if len(state.nodes) == 1:
            return node.name
    return None


async def _service(http: httpx.AsyncClient, service: ServiceState) -> ServiceStatus:
    try:
        ready = (await http.get(f"{service.url}{service.ready_path}")).status_code == 200
    except httpx.HTTPError:
        ready = False
    return ServiceStatus(
        name=service.name,
        datacenter=service.datacenter,
        url=service.url,
        pid=service.pid,
        process_alive=process_alive(service.pid) if service.pid else None,
        ready=ready,
    )


def _datacenter(state: RunState | None, server: str | None) -> str | None:
    if server is None:
        return None
    if state is not None:
        found = state.datacenter_of(server)
        if found:
            return found
    # Without a state file, the local topology's naming (`dc2-n1`) still tells.
    prefix, separator, _ = server.rpartition("-n")
    return prefix if separator else None


async def _stream(js: JetStreamContext, info: StreamInfo, state: RunState | None) -> StreamStatus:
    name = info.config.name or "?"
    cluster = info.cluster
    leader = cluster.leader if cluster else None
    peers: list[ReplicaStatus] = []
    if leader:
        peers.append(
            ReplicaStatus(server=leader, datacenter=_datacenter(state, leader), current=True)
        )
    for replica in (cluster.replicas if cluster else None) or []:
        server = replica.name or "?"
        peers.append(
            ReplicaStatus(
                server=server,
                datacenter=_datacenter(state, server),
                current=replica.current,
                offline=replica.offline,
                lag=replica.lag,
            )
        )
    if not peers and state is not None and len(state.nodes) == 1:
        # A server outside any cluster reports no cluster block: it holds every stream itself.
        only = state.nodes[0]
        leader = only.name
        peers.append(ReplicaStatus(server=only.name, datacenter=only.datacenter, current=True))
    status = StreamStatus(
        name=name,
        subjects=list(info.config.subjects or []),
        replicas=info.config.num_replicas or 1,
        messages=info.state.messages,
        bytes=info.state.bytes,
        leader=leader,
        leader_datacenter=_datacenter(state, leader),
        peers=peers,
        datacenters=sorted({p.datacenter for p in peers if p.datacenter}),
    )
    try:
        for consumer in await js.consumers_info(name):
            status.consumers.append(
                ConsumerStatus(
                    name=consumer.name or consumer.config.durable_name or "?",
                    num_pending=consumer.num_pending or 0,
                    num_ack_pending=consumer.num_ack_pending or 0,
                    num_redelivered=consumer.num_redelivered or 0,
                    lag=(consumer.num_pending or 0) + (consumer.num_ack_pending or 0),
                )
            )
    except Exception as error:  # noqa: BLE001 — reported, the rest of the status still matters
        status.consumers_error = repr(error)
    return status


async def dead_letter_counts(js: JetStreamContext) -> dict[str, int]:
    """Dead letters waiting per consumer durable, from the per-subject counts of the stream."""
    info = await js.stream_info(DEAD_LETTER_STREAM, subjects_filter=f"{DEAD_LETTER_PREFIX}.>")
    counts: dict[str, int] = {}
    for subject, count in (info.state.subjects or {}).items():
        durable = subject.removeprefix(f"{DEAD_LETTER_PREFIX}.")
        counts[durable] = counts.get(durable, 0) + count
    return dict(sorted(counts.items()))


# -- rendering ------------------------------------------------------------------------------
def _mark(ok: bool | None) -> str:
    if ok is None:
        return "[dim]?[/]"
    return "[green]up[/]" if ok else "[red]down[/]"


def render(report: StatusReport, console: Console) -> None:
    if report.nodes:
        nodes = Table(title="NATS nodes")
        for column in ("datacenter", "node", "health", "client", "pid"):
            nodes.add_column(column)
        for node in report.nodes:
            nodes.add_row(
                node.datacenter,
                node.name + (" [bold](meta leader)[/]" if node.name == report.meta_leader else ""),
                _mark(node.healthy),
                node.client_url,
                str(node.pid or "-"),
            )
        console.print(nodes)
    leader = report.meta_leader or "[red]none[/]"
    console.print(f"meta leader: {leader} ({report.meta_leader_datacenter or '?'})")
    if report.jetstream_error:
        console.print(f"[red]JetStream unavailable:[/] {report.jetstream_error}")
    if report.streams:
        streams = Table(title="Streams")
        for column in ("stream", "replicas", "messages", "leader", "replica datacenters"):
            streams.add_column(column)
        for stream in report.streams:
            streams.add_row(
                stream.name,
                str(stream.replicas),
                str(stream.messages),
                f"{stream.leader or '[red]none[/]'} ({stream.leader_datacenter or '?'})",
                ", ".join(stream.datacenters),
            )
        console.print(streams)
        _render_consumers(report.streams, console)
    if report.dead_letters:
        dead = Table(title="Dead letters")
        dead.add_column("consumer")
        dead.add_column("count", justify="right")
        for durable, count in report.dead_letters.items():
            dead.add_row(durable, str(count))
        console.print(dead)
    elif report.streams:
        console.print("dead letters: none")
    if report.services:
        services = Table(title="Services")
        for column in ("datacenter", "service", "url", "ready", "pid"):
            services.add_column(column)
        for service in report.services:
            services.add_row(
                service.datacenter,
                service.name,
                service.url,
                _mark(service.ready),
                str(service.pid or "-"),
            )
        console.print(services)


def _render_consumers(streams: Sequence[StreamStatus], console: Console) -> None:
    rows = [(s.name, c) for s in streams for c in s.consumers]
    if not rows:
        return
    table = Table(title="Consumers")
    for column in ("stream", "consumer", "pending", "ack pending", "lag"):
        table.add_column(column)
    for stream, consumer in rows:
        table.add_row(
            stream,
            consumer.name,
            str(consumer.num_pending),
            str(consumer.num_ack_pending),
            str(consumer.lag),
        )
    console.print(table)
