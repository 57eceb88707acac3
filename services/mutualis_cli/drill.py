"""`mutualis drill`: inject a fault into a running platform under load and report what it cost.

The workload is the end-to-end journey (login, submit, visa, step-up signature, seal, archive,
notifications) started at a steady rate, round-robin over the fifteen tenants (a TOTP code
works once per 30 s window and person) and over the datacenters as entry points. Its HTTP
client stands for the load balancer a deployment has in front of the instances: a request
goes to the journey's datacenter, to another one when the connection is refused, and never to
a datacenter the drill has just faulted (a balancer's health check would notice it within a
few seconds; the drill skips that delay).

Sequence: `--before` seconds of load, the fault, load for `--after` seconds while the fault
heals after `--down-for` (restart killed nodes from their config file, killed instances with
`restart_service`, SIGCONT frozen ones), wait until every stream's replicas are current again,
let in-flight journeys finish, then check the invariants against what the platform stored:
every completed journey's folder events in PARAPHEUR_EVENTS and its record in ARCHIVE_EVENTS
(acknowledged but lost), one signature per folder step, one record ingestion per folder, one
email per (recipient, subject, folder) in the dev mail sink (duplicated side effects).
Besides each journey's longest wait between two steps, the balancer times every request: the
slowest one sent during the fault, judged against the slowest answer to the same operation
before it, is what a client saw of the fault request by request (a journey's steps also hold
its own pauses, such as waiting for the next TOTP code). Targets from issue 8 are reported as
met or not, never enforced: the exit code is 1 only when
an invariant breaks (loss or duplicate).

Every fault except `--kill-service` needs `mutualis up --ha` (one instance per service per
datacenter); `--kill-service` also runs on a single-instance platform, where its outage is
client-visible by construction.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from rich.console import Console

from mutualis_cli.demo import PlatformNotRunning, platform_urls
from mutualis_cli.journey.login import LoginFailed, code_waits
from mutualis_cli.journey.scenario import Journey, JourneyFailed, PlatformUrls
from mutualis_cli.platform import restart_service
from mutualis_cli.rundir import DEFAULT_RUN_DIR, RunState, load_state, save_state
from mutualis_cli.supervisor import process_alive, wait_gone
from mutualis_cli.target import connect, identity_of, use_identity
from mutualis_kernel.bus.leaders import LEADER_ELECTED_SUBJECT
from mutualis_kernel.runtime.process import nats_server_binary
from mutualis_kernel.tenants import default_tenants

console = Console(highlight=False)

#: Issue 8's targets: a crash costs at most an election (4.5-7 s here) + 1 s.
RTO_CRASH_TARGET_S = 8.0
#: ... that is, at most NATS's own election time, as the servers' advisories measure it in the
#: same run (`ElectionLog`), plus this.
ELECTION_MARGIN_S = 1.0
#: Faults that take something down for --down-for before it comes back.
_DOWN_FOR_FAULTS = ("kill", "freeze", "kill-meta-leader")
RTO_GRACEFUL_TARGET_S = 1.0
CATCH_UP_TARGET_S = 10.0
#: Steps a journey has logged once its folder is submitted (its events are being handled).
SUBMITTED_STEPS = 2
#: One TOTP code per person per window (identity refuses a code used twice).
TOTP_WINDOW_S = 31.0
#: Seconds of load kept after the heal, however long the heal took.
AFTER_HEAL_S = 5.0
#: How long in-flight journeys may take to finish once the load stops.
DRAIN_TIMEOUT_S = 120.0


class DrillRefused(RuntimeError):
    pass


# -- the load balancer the workload talks through -------------------------------------------
#: (when it was sent, monotonic; seconds until its answer's headers; its operation)
RequestTimer = Callable[[float, float, str], None]
_TENANT_SLUGS = frozenset(default_tenants().slugs)
_API_VERSION = re.compile(r"v\d+")


def operation_of(request: httpx.Request) -> str:
    """`POST /v1/folders/{id}/steps/{id}/sign`: the request with its ids and tenant taken out,
    so requests of different journeys compare."""
    segments = [
        "{tenant}"
        if part in _TENANT_SLUGS
        else "{id}"
        if any(c.isdigit() for c in part) and not _API_VERSION.fullmatch(part)
        else part
        for part in request.url.path.split("/")
    ]
    return f"{request.method} {'/'.join(segments)}"


class Balancer(httpx.AsyncBaseTransport):
    """Sends a request to the journey's datacenter, or the next live one when refused."""

    def __init__(
        self,
        state: RunState,
        preferred: str,
        down: set[str],
        on_request: RequestTimer | None = None,
    ) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self._down = down
        self._on_request = on_request
        order = [preferred] + [dc for dc in state.topology.datacenters if dc != preferred]
        by_name: dict[str, dict[str, int]] = {}
        for service in state.services:
            by_name.setdefault(service.name, {})[service.datacenter] = service.port
        #: Any instance's port -> (label, datacenter, port) of every instance of that service.
        self._routes: dict[int, list[tuple[str, str, int]]] = {}
        for name, ports in by_name.items():
            ordered = [(f"{name}@{dc}", dc, ports[dc]) for dc in order if dc in ports]
            for port in ports.values():
                self._routes[port] = ordered

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        candidates = self._routes.get(request.url.port or 0)
        if not candidates:
            return await self._inner.handle_async_request(request)
        # `down` holds datacenters and instance labels the balancer's health check has dropped.
        live = [port for label, dc, port in candidates if not self._down & {label, dc}] or [
            candidates[0][2]
        ]
        error: httpx.ConnectError | None = None
        sent = time.monotonic()
        for port in live:
            # The Host header keeps the address the client asked for, as behind a balancer.
            request.url = request.url.copy_with(port=port)
            try:
                response = await self._inner.handle_async_request(request)
            except httpx.ConnectError as refused:
                error = refused
                continue
            if self._on_request is not None:
                self._on_request(sent, time.monotonic() - sent, operation_of(request))
            return response
        assert error is not None
        raise error

    async def aclose(self) -> None:
        await self._inner.aclose()


def balanced_journey(balancer: Balancer) -> type[Journey]:
    class BalancedJourney(Journey):
        def _client(self, timeout: float = 30) -> httpx.AsyncClient:  # type: ignore[override]
            client = Journey._client(timeout)
            client._transport = balancer  # the hooks set by Journey stay in place
            return client

    return BalancedJourney


# -- the workload ---------------------------------------------------------------------------
@dataclass
class JourneyRecord:
    index: int
    tenant: str
    datacenter: str
    started_s: float
    finished_s: float | None = None
    folder_id: str = ""
    record_id: str = ""
    error: str = ""
    steps: list[float] = field(default_factory=list)
    step_names: list[str] = field(default_factory=list)
    #: When the journey waited for a fresh one-time code (the person's pace, not the
    #: platform's), as (start, end) in workload time.
    pauses: list[tuple[float, float]] = field(default_factory=list)

    def reached(self, at_s: float, step: str) -> None:
        self.steps.append(at_s)
        self.step_names.append(step)

    def paused_at(self, moment: float) -> bool:
        return any(start <= moment < end for start, end in self.pauses)

    def working(self, start: float, end: float) -> float:
        """Of [start, end], the seconds the journey was not waiting for a one-time code."""
        paused = sum(max(0.0, min(end, b) - max(start, a)) for a, b in self.pauses)
        return max(0.0, end - start - paused)


@dataclass(frozen=True)
class TimedRequest:
    """One request a journey sent through the balancer, and how long its answer took."""

    at_s: float
    seconds: float
    operation: str


@dataclass
class Workload:
    state: RunState
    urls: PlatformUrls
    rate: float
    out_dir: Path
    t0: float = field(default_factory=time.monotonic)
    down: set[str] = field(default_factory=set)
    records: list[JourneyRecord] = field(default_factory=list)
    requests: list[TimedRequest] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def now(self) -> float:
        return time.monotonic() - self.t0

    async def run(self) -> None:
        from mutualis_trust.testing import minimal_pdf

        tenants = sorted(default_tenants().slugs)
        datacenters = self.state.topology.datacenters if self.state.topology.ha else ["dc1"]
        last_start: dict[str, float] = {}
        index = 0
        while not self._stop.is_set():
            # A tenant's signatory steps up with a TOTP code that works once per 30 s window:
            # the same tenant waits a window before its next journey.
            now = self.now()
            ready = [t for t in tenants if now - last_start.get(t, -TOTP_WINDOW_S) >= TOTP_WINDOW_S]
            if ready:
                tenant = min(ready, key=lambda t: last_start.get(t, -1e9))
                last_start[tenant] = now
                live = [dc for dc in datacenters if dc not in self.down] or datacenters
                record = JourneyRecord(index, tenant, live[index % len(live)], now)
                self.records.append(record)
                pdf = minimal_pdf(f"Arrêté d'exercice — {tenant} #{index}")
                self._tasks.append(asyncio.create_task(self._one(record, pdf)))
                index += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), 1 / self.rate)

    async def _one(self, record: JourneyRecord, pdf: bytes) -> None:
        def timed(sent: float, seconds: float, operation: str) -> None:
            self.requests.append(TimedRequest(sent - self.t0, seconds, operation))

        balancer = Balancer(self.state, record.datacenter, self.down, on_request=timed)
        journey_type = balanced_journey(balancer)
        journey = journey_type(
            self.urls,
            record.tenant,
            out_dir=self.out_dir,
            on_step=lambda step: record.reached(self.now(), step),
            timeout_s=90,
        )
        waits: list[tuple[float, float]] = []
        code_waits.set(waits)  # this task's context only: each journey runs in its own
        try:
            result = await journey.run(pdf)
            record.folder_id, record.record_id = result.folder_id, result.record_id
        except (JourneyFailed, LoginFailed, httpx.HTTPError) as error:
            record.folder_id = journey.result.folder_id
            record.error = f"{type(error).__name__}: {error}"[:300]
        except Exception as error:  # noqa: BLE001 - a journey never ends unaccounted for
            record.folder_id = journey.result.folder_id
            record.error = f"unexpected {type(error).__name__}: {error!r}"[:300]
        finally:
            record.finished_s = self.now()
            record.pauses = [(a - self.t0, b - self.t0) for a, b in waits]
            await balancer.aclose()

    async def stop_and_drain(self, timeout: float) -> None:
        self._stop.set()
        pending = [t for t in self._tasks if not t.done()]
        if pending:
            _, still = await asyncio.wait(pending, timeout=timeout)
            for task in still:
                task.cancel()
            await asyncio.gather(*still, return_exceptions=True)
        for record in self.records:
            if record.finished_s is None:
                record.error = (
                    record.error or f"still running {timeout:.0f}s after the load stopped"
                )


# -- processes ------------------------------------------------------------------------------
def _signal(pid: int | None, signum: signal.Signals) -> None:
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


def _wait_healthy(monitor_url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{monitor_url}/healthz", timeout=1.0).status_code == 200:
                return
        time.sleep(0.1)
    raise TimeoutError(f"NATS node at {monitor_url} not healthy after {timeout:.0f}s")


class Platform:
    """The processes of a running platform, read from and written back to state.json."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir

    @property
    def state(self) -> RunState:
        state = load_state(self.run_dir)
        if state is None:
            raise PlatformNotRunning(f"nothing runs from {self.run_dir}")
        return state

    def node_pids(self, datacenter: str) -> list[int]:
        return [n.pid for n in self.state.nodes if n.datacenter == datacenter and n.pid]

    def service_labels(self, datacenter: str) -> list[str]:
        return [
            s.label
            for s in self.state.services
            if s.datacenter == datacenter and s.name not in ("tsa", "sinks")
        ]

    def signal_datacenter(self, datacenter: str, signum: signal.Signals) -> None:
        state = self.state
        for node in state.nodes:
            if node.datacenter == datacenter:
                _signal(node.pid, signum)
        for service in state.services:
            if service.label in self.service_labels(datacenter):
                _signal(service.pid, signum)

    def meta_leader(self) -> str | None:
        for node in self.state.nodes:
            with contextlib.suppress(httpx.HTTPError, ValueError):
                jsz = httpx.get(f"{node.monitor_url}/jsz", timeout=1.0).json()
                leader = (jsz.get("meta_cluster") or {}).get("leader")
                if leader:
                    return str(leader)
        return None

    def stop_node(self, name: str, signum: signal.Signals) -> None:
        node = next(n for n in self.state.nodes if n.name == name)
        if node.pid is not None and process_alive(node.pid):
            _signal(node.pid, signal.SIGCONT)
            _signal(node.pid, signum)
            if not wait_gone([node.pid], 20.0):
                _signal(node.pid, signal.SIGKILL)
                wait_gone([node.pid], 5.0)

    def start_node(self, name: str) -> None:
        """Start a node again from the config file `up` wrote, and record its new pid."""
        state = self.state
        node = next(n for n in state.nodes if n.name == name)
        nats_dir = self.run_dir.resolve() / "nats"
        with (nats_dir / f"{name}.log").open("ab") as log:
            process = subprocess.Popen(
                [nats_server_binary(), "-c", str(nats_dir / f"{name}.conf")],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        node.pid = process.pid
        save_state(state)
        _wait_healthy(node.monitor_url)

    def restart_instance(self, label: str, *, kill: bool) -> None:
        from mutualis_kernel.service import installed_manifests

        restart_service(self.run_dir, label, installed_manifests(), kill=kill)


# -- catch-up -------------------------------------------------------------------------------
async def lagging_streams(urls: list[str]) -> list[str]:
    """Streams (KV buckets and object stores included) with a replica not current."""
    nc = await connect(urls, max_reconnect_attempts=1)
    try:
        js = nc.jetstream(timeout=3)
        lagging = []
        for info in await js.streams_info():
            cluster = info.cluster
            replicas = (cluster.replicas or []) if cluster else []
            expected = (info.config.num_replicas or 1) - 1
            if (
                cluster is None
                or cluster.leader is None
                or len(replicas) < expected
                or any(not r.current or (r.lag or 0) > 0 for r in replicas)
            ):
                lagging.append(info.config.name or "?")
        return lagging
    finally:
        await nc.close()


async def wait_caught_up(urls: list[str], timeout: float = 120.0) -> tuple[float | None, list[str]]:
    started = time.monotonic()
    lagging: list[str] = ["(not checked)"]
    while time.monotonic() - started < timeout:
        try:
            lagging = await lagging_streams(urls)
        except Exception as error:  # noqa: BLE001 - any failure means "not yet", we retry
            lagging = [f"({type(error).__name__})"]
        if not lagging:
            return time.monotonic() - started, []
        await asyncio.sleep(0.5)
    return None, lagging


# -- invariants -----------------------------------------------------------------------------
async def read_stream(urls: list[str], stream: str, subject: str) -> list[tuple[str, bytes]]:
    from mutualis_kernel.bus.kv import stream_messages

    nc = await connect(urls, max_reconnect_attempts=60)
    try:
        js = nc.jetstream(timeout=5)
        return [(m.subject, m.data) async for m in stream_messages(js, stream, subject)]
    finally:
        await nc.close()


def _aggregate(subject: str) -> tuple[str, str, str]:
    """(tenant, aggregate id, event name) of `evt.<service>.<tenant>.<aggregate>.<id>.<event>`."""
    tokens = subject.split(".")
    return tokens[2], tokens[4], ".".join(tokens[5:])


async def check_invariants(
    state: RunState, records: list[JourneyRecord], mail_dir: Path | None
) -> dict[str, Any]:
    folders = {r.folder_id for r in records if r.folder_id}
    completed = [r for r in records if r.finished_s is not None and not r.error]
    parapheur = await read_stream(state.client_urls, "PARAPHEUR_EVENTS", "evt.parapheur.>")
    archive = await read_stream(state.client_urls, "ARCHIVE_EVENTS", "evt.archive.>")

    events_by_folder: Counter[str] = Counter()
    signatures: Counter[tuple[str, int]] = Counter()
    for subject, data in parapheur:
        _, folder_id, event = _aggregate(subject)
        if folder_id not in folders:
            continue
        events_by_folder[folder_id] += 1
        if event == "step.signed":
            signatures[(folder_id, int(json.loads(data).get("step", -1)))] += 1
    ingestions: Counter[str] = Counter()
    for subject, _ in archive:
        _, record_id, event = _aggregate(subject)
        if event == "record.ingested":
            ingestions[record_id] += 1

    lost = []
    for record in completed:
        if events_by_folder[record.folder_id] == 0:
            lost.append(f"{record.tenant}/{record.folder_id}: no event in PARAPHEUR_EVENTS")
        if ingestions[record.record_id] == 0:
            lost.append(f"{record.tenant}/{record.record_id}: no record.ingested in ARCHIVE_EVENTS")
    # A step that answered 2xx to the client must be in the stream too (also for failed
    # journeys): the folder's submission at least.
    for record in records:
        if record.folder_id and events_by_folder[record.folder_id] == 0 and record.error:
            lost.append(f"{record.tenant}/{record.folder_id}: submitted, then no event stored")

    mails: Counter[tuple[str, str, str]] = Counter()
    if mail_dir is not None:
        from notifications.devsinks import list_mail

        for mail in list_mail(mail_dir):
            text = mail.get("subject", "") + mail.get("text", "") + json.dumps(mail.get("headers"))
            for folder_id in folders:
                if folder_id in text:
                    for to in mail.get("to", []):
                        mails[(to, str(mail.get("subject", "")), folder_id)] += 1
    return {
        "events_stored": sum(events_by_folder.values())
        + sum(ingestions[r.record_id] for r in records if r.record_id),
        "acknowledged_but_lost": lost,
        "duplicate_signatures": [f"{f} step {s}: {n}" for (f, s), n in signatures.items() if n > 1],
        "duplicate_records": [
            f"{r}: ingested {n} times"
            for r, n in ingestions.items()
            if n > 1 and any(rec.record_id == r for rec in records)
        ],
        "duplicate_emails": [f"{to} «{s}» {f}: {n}" for (to, s, f), n in mails.items() if n > 1],
        "emails": sum(mails.values()),
    }


class ElectionLog:
    """The stream leaders the servers announce elected during the drill, with when.

    NATS's own election time is the yardstick of a crash's RTO (issue 8: "no more than NATS's
    own leader-election time + 1 s"): a request that needs a stream cannot be answered before
    that stream has a leader again. Raft election timeouts are drawn at random, so across the
    dozens of streams a datacenter led, the last election varies from run to run (4.5 s to
    over 8 s here)."""

    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now
        self.elected: list[tuple[float, str]] = []
        self._client: NATS | None = None

    async def start(self, urls: list[str]) -> None:
        async def note(message: Msg) -> None:
            self.elected.append((self._now(), message.subject.rsplit(".", 1)[-1]))

        # Reconnects forever: the node it talks to may be the one the drill kills.
        self._client = await connect(urls, max_reconnect_attempts=-1)
        await self._client.subscribe(LEADER_ELECTED_SUBJECT, cb=note)

    async def stop(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.close()

    def summary(self, fault_at: float, until: float) -> dict[str, Any]:
        """The elections between the fault and `until` (every stream current again): how
        many, and the last."""
        during = [(t - fault_at, stream) for t, stream in self.elected if fault_at <= t < until]
        if not during:
            return {"streams_elected": 0, "last_elected_s": None, "last_stream": None, "each": []}
        last_s, last_stream = max(during)
        return {
            "streams_elected": len(during),
            "last_elected_s": round(last_s, 3),
            "last_stream": last_stream,
            "each": [{"stream": stream, "after_s": round(t, 3)} for t, stream in sorted(during)],
        }


# -- the drill ------------------------------------------------------------------------------
@dataclass
class Fault:
    kind: str  # kill | freeze | rolling-restart | kill-meta-leader | kill-service
    target: str = ""

    @property
    def label(self) -> str:
        return f"--{self.kind} {self.target}".strip()

    @property
    def graceful(self) -> bool:
        return self.kind == "rolling-restart"


@dataclass
class Timeline:
    events: list[dict[str, Any]] = field(default_factory=list)

    def mark(self, at: float, what: str) -> None:
        self.events.append({"at_s": round(at, 3), "what": what})
        console.print(f"  [dim]{at:7.2f}s[/] {what}")


async def restart_patiently(
    platform: Platform, label: str, mark: Callable[[str], None], *, kill: bool = True
) -> None:
    from mutualis_cli.supervisor import ServiceNotReady

    for attempt in (1, 2):
        try:
            await asyncio.to_thread(platform.restart_instance, label, kill=kill)
            return
        except ServiceNotReady as error:
            mark(f"{label} did not start (attempt {attempt}): {str(error).splitlines()[0]}")
            if attempt == 2:
                raise
            await asyncio.sleep(2)


async def inject(
    fault: Fault, platform: Platform, workload: Workload, timeline: Timeline, down_for: float
) -> tuple[float | None, list[str]]:
    """Hurt the platform, heal it; return the catch-up time after the last heal."""
    urls = platform.state.client_urls

    def mark(what: str) -> None:
        timeline.mark(workload.now(), what)

    if fault.kind in ("kill", "freeze"):
        dc = fault.target
        workload.down.add(dc)
        if fault.kind == "kill":
            platform.signal_datacenter(dc, signal.SIGKILL)
            mark(f"SIGKILL {dc}: NATS node(s) and service instances")
        else:
            platform.signal_datacenter(dc, signal.SIGSTOP)
            mark(f"SIGSTOP {dc}: NATS node(s) and service instances")
        await asyncio.sleep(down_for)
        if fault.kind == "kill":
            for node in [n.name for n in platform.state.nodes if n.datacenter == dc]:
                await asyncio.to_thread(platform.start_node, node)
            mark(f"{dc} NATS node(s) restarted")
            # An instance starting beside a node that is still catching up can time out on
            # its startup JetStream calls: let the node catch up first, and retry once.
            caught, _ = await wait_caught_up(urls)
            mark(f"{dc} node(s) caught up ({caught and round(caught, 2)} s)")
            for label in platform.service_labels(dc):
                await restart_patiently(platform, label, mark)
            mark(f"{dc} service instances restarted and ready")
        else:
            platform.signal_datacenter(dc, signal.SIGCONT)
            mark(f"SIGCONT {dc}")
        workload.down.discard(dc)
        caught_up = await wait_caught_up(urls)
        mark(f"every stream current again ({caught_up[0] and round(caught_up[0], 2)} s)")
        return caught_up
    if fault.kind == "rolling-restart":
        worst: float | None = 0.0
        lagging: list[str] = []
        for dc in platform.state.topology.datacenters:
            workload.down.add(dc)
            for node in [n.name for n in platform.state.nodes if n.datacenter == dc]:
                await asyncio.to_thread(platform.stop_node, node, signal.SIGTERM)
                mark(f"SIGTERM {node} ({dc}): stopped")
                await asyncio.to_thread(platform.start_node, node)
                mark(f"{node} restarted")
            caught, lagging = await wait_caught_up(urls)
            mark(f"{dc} caught up ({caught and round(caught, 2)} s)")
            worst = None if caught is None or worst is None else max(worst, caught)
            for label in platform.service_labels(dc):
                await restart_patiently(platform, label, mark, kill=False)
                mark(f"{label} restarted (SIGTERM) and ready")
            workload.down.discard(dc)
        return worst, lagging
    if fault.kind == "kill-meta-leader":
        leader = platform.meta_leader()
        if leader is None:
            raise DrillRefused("no JetStream meta leader to kill")
        leader_node = next(n for n in platform.state.nodes if n.name == leader)
        _signal(leader_node.pid, signal.SIGKILL)
        mark(f"SIGKILL meta leader {leader} ({leader_node.datacenter})")
        await asyncio.sleep(down_for)
        await asyncio.to_thread(platform.start_node, leader)
        mark(f"{leader} restarted")
        caught_up = await wait_caught_up(urls)
        mark(f"every stream current again ({caught_up[0] and round(caught_up[0], 2)} s)")
        return caught_up
    # kill-service: wait until two journeys are past submission, so the instance's consumers
    # (assignment, seal, completion) are likely mid-handler when it dies.
    label = f"{fault.target}@dc1"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (  # noqa: ASYNC110 - polling a list
        sum(len(r.steps) >= SUBMITTED_STEPS and r.finished_s is None for r in workload.records) < 2
    ):
        await asyncio.sleep(0.05)
    if platform.state.topology.ha:
        workload.down.add(label)
    mark(f"SIGKILL {label}")
    await asyncio.to_thread(platform.restart_instance, label, kill=True)
    workload.down.discard(label)
    mark(f"{label} restarted and ready")
    return 0.0, []


def longest_gap(
    times: list[float],
    start: float,
    end: float,
    *,
    beginning_before: float | None = None,
    busy: Callable[[float], bool] | None = None,
) -> tuple[float, float]:
    """The longest time without any completed step between start and end, and where it began.

    With `beginning_before`, only gaps that begin before that moment count (the failover,
    not the later load of restarting what was lost). With `busy`, a gap counts only the time
    in it while `busy` says work was pending (sampled every 50 ms): the drill's load pauses
    by itself (a tenant waits for the next TOTP window), and a pause with nothing to do is
    not a stall.
    """
    points = sorted(t for t in times if start <= t <= end)
    best, at = 0.0, start
    previous = start
    for t in [*points, end]:
        length = t - previous if busy is None else _busy_seconds(busy, previous, t)
        if (beginning_before is None or previous < beginning_before) and length > best:
            best, at = length, previous
        previous = t
    return best, at


def _busy_seconds(busy: Callable[[float], bool], start: float, end: float) -> float:
    tick = 0.05
    samples = max(1, round((end - start) / tick))
    width = (end - start) / samples
    return round(sum(width for i in range(samples) if busy(start + (i + 0.5) * width)), 3)


def slowest_request(
    requests: list[TimedRequest], fault_at: float, *, beginning_before: float
) -> tuple[float, TimedRequest | None]:
    """The request, sent in [fault_at - 1, beginning_before), that took longest beyond the
    slowest answer to the same operation before the fault: (that excess, the request).

    What a client of the platform saw of the fault, request by request; a journey's steps
    also hold pauses of the journey's own (waiting for the next TOTP code).
    """
    before: dict[str, float] = {}
    for request in requests:
        if request.at_s < fault_at - 1.0:
            before[request.operation] = max(before.get(request.operation, 0.0), request.seconds)
    ranked = slowest_requests(requests, fault_at, beginning_before=beginning_before, count=1)
    return (max(0.0, ranked[0][0]), ranked[0][1]) if ranked else (0.0, None)


def slowest_requests(
    requests: list[TimedRequest], fault_at: float, *, beginning_before: float, count: int
) -> list[tuple[float, TimedRequest]]:
    """The `count` requests sent in [fault_at - 1, beginning_before) that took longest beyond
    the slowest answer to the same operation before the fault, worst first, with that excess:
    where an SRE starts looking when the slowest one is not alone."""
    before: dict[str, float] = {}
    for request in requests:
        if request.at_s < fault_at - 1.0:
            before[request.operation] = max(before.get(request.operation, 0.0), request.seconds)
    usual = max(before.values(), default=0.0)
    during = [r for r in requests if fault_at - 1.0 <= r.at_s < beginning_before]
    ranked = sorted(
        ((r.seconds - before.get(r.operation, usual), r) for r in during),
        key=lambda pair: pair[0],
        reverse=True,
    )
    return ranked[:count]


def longest_wait(
    records: list[JourneyRecord], start: float, end: float, *, beginning_before: float
) -> tuple[float, float, str]:
    """The longest any one journey waited for its next step, among waits that began in
    [start, beginning_before): what a user of the platform saw, while other journeys that
    did not touch the affected streams may have gone on. Time the journey spent waiting for
    a fresh one-time code is not the platform's and does not count. Returns (seconds, when
    the wait began, the step it waited for)."""
    best, at, waited_for = 0.0, start, ""
    for record in records:
        previous = record.started_s
        names = [*record.step_names, *[""] * len(record.steps)][: len(record.steps)]
        ends = [*record.steps, record.finished_s or end]
        for t, name in zip(ends, [*names, "the end"], strict=True):
            waited = record.working(previous, t)
            if start <= previous < beginning_before and waited > best:
                best, at, waited_for = waited, previous, name
            previous = t
    return best, at, waited_for


async def run_drill(
    run_dir: Path,
    fault: Fault,
    *,
    rate: float,
    before: float,
    after: float,
    down_for: float,
) -> dict[str, Any]:
    platform = Platform(run_dir)
    state = platform.state
    urls = platform_urls(state)
    workload = Workload(state, urls, rate, run_dir / "drill")
    timeline = Timeline()
    elections = ElectionLog(workload.now)
    await elections.start(state.client_urls)
    load = asyncio.create_task(workload.run())
    timeline.mark(
        workload.now(), f"load started: {rate}/s over {len(default_tenants().slugs)} tenants"
    )
    await asyncio.sleep(before)
    fault_at = workload.now()
    caught_up_s, lagging = await inject(fault, platform, workload, timeline, down_for)
    healed_at = workload.now()
    # Some load after the heal too, so the report shows the healed platform serving again.
    await asyncio.sleep(
        max(0.0, fault_at + after - workload.now(), AFTER_HEAL_S - (workload.now() - healed_at))
    )
    load_stopped_at = workload.now()
    timeline.mark(load_stopped_at, "load stopped; waiting for journeys in flight")
    await workload.stop_and_drain(DRAIN_TIMEOUT_S)
    await load
    timeline.mark(workload.now(), "every journey finished; checking invariants")
    await elections.stop()
    checks = await check_invariants(state, workload.records, urls.mail_dir)

    records = workload.records
    steps = [t for r in records for t in r.steps]
    first_step = min(steps) if steps else 0.0
    baseline, _, _ = longest_wait(records, first_step, fault_at, beginning_before=fault_at - 1.0)
    # A journey's start counts as activity too: before it, nothing was waiting to be done.
    starts = [r.started_s for r in records]

    def in_flight(moment: float) -> bool:
        # A journey waiting for the next TOTP window has nothing for the platform to do.
        return any(
            r.started_s <= moment < (r.finished_s or load_stopped_at) and not r.paused_at(moment)
            for r in records
        )

    stall, stall_at = longest_gap([*steps, *starts], fault_at, load_stopped_at, busy=in_flight)
    # The failover is what happens before the lost part comes back; afterwards its NATS node
    # and service instances restart on the same two cores as the survivors (not so with real
    # datacenters), which is reported apart.
    heal_starts_at = fault_at + down_for if fault.kind in _DOWN_FOR_FAULTS else load_stopped_at
    longest, longest_from, longest_step = longest_wait(
        records, fault_at - 1.0, load_stopped_at, beginning_before=heal_starts_at
    )
    request_excess, slowest = slowest_request(
        workload.requests, fault_at, beginning_before=heal_starts_at
    )
    failed = [r for r in records if r.error]
    after_heal = [r for r in failed if r.started_s >= healed_at]
    rto_target = RTO_GRACEFUL_TARGET_S if fault.graceful else RTO_CRASH_TARGET_S
    # Until the platform is whole again: a stream whose leader died elects a new one 4.5-9 s
    # later whether or not the node is back by then (--down-for is 5 s).
    election = elections.summary(fault_at, healed_at)
    # Issue 8's rule for a crash, with NATS's election time as measured in this very run.
    election_bound = (
        None
        if fault.graceful or election["last_elected_s"] is None
        else election["last_elected_s"] + ELECTION_MARGIN_S
    )
    # A stall is measured against the workload's own pace before the fault: the slowest step
    # (a signature with its timestamp, an ingest) takes a second or more when nothing is wrong.
    excess = max(0.0, longest - baseline)
    report: dict[str, Any] = {
        "fault": fault.label,
        "run_dir": str(run_dir),
        "ha": state.topology.ha,
        "rate_per_s": rate,
        "before_s": before,
        "after_s": after,
        "down_for_s": down_for if fault.kind in _DOWN_FOR_FAULTS else None,
        "journeys": {
            "started": len(records),
            "completed": len(records) - len(failed),
            "failed": len(failed),
            "failed_after_heal": len(after_heal),
        },
        "steps_acknowledged": len(steps),
        "events_stored": checks["events_stored"],
        "emails": checks["emails"],
        "acknowledged_but_lost": checks["acknowledged_but_lost"],
        "duplicates": {
            "emails": checks["duplicate_emails"],
            "records": checks["duplicate_records"],
            "signatures": checks["duplicate_signatures"],
        },
        "client_visible_errors": [
            {"journey": r.index, "tenant": r.tenant, "dc": r.datacenter, "error": r.error}
            for r in failed
        ],
        "longest_wait_s": round(longest, 3),
        "longest_wait_from_s": round(longest_from, 3),
        "longest_wait_for_step": longest_step,
        "longest_stall_s": round(stall, 3),
        "longest_stall_at_s": round(stall_at, 3),
        "slowest_step_before_fault_s": round(baseline, 3),
        "rto_estimate_s": round(excess, 3),
        "requests_timed": len(workload.requests),
        "slowest_request": None
        if slowest is None
        else {
            "operation": slowest.operation,
            "at_s": round(slowest.at_s, 3),
            "seconds": round(slowest.seconds, 3),
            "beyond_same_operation_before_fault_s": round(request_excess, 3),
        },
        "slowest_requests": [
            {
                "operation": r.operation,
                "at_s": round(r.at_s, 3),
                "seconds": round(r.seconds, 3),
                "beyond_same_operation_before_fault_s": round(excess, 3),
            }
            for excess, r in slowest_requests(
                workload.requests, fault_at, beginning_before=heal_starts_at, count=10
            )
        ],
        "nats_elections": election,
        "catch_up_s": None if caught_up_s is None else round(caught_up_s, 3),
        "lagging_streams": lagging,
        "timeline": timeline.events,
        "journey_seconds": sorted(
            round(r.finished_s - r.started_s, 2) for r in records if r.finished_s and not r.error
        ),
    }
    report["targets"] = {
        "rpo_0": not report["acknowledged_but_lost"],
        "no_duplicate_side_effects": not any(report["duplicates"].values()),
        f"rto_le_{rto_target:g}s": excess <= rto_target,
        f"request_rto_le_{rto_target:g}s": request_excess <= rto_target,
        **(
            {}
            if election_bound is None
            else {
                "rto_le_nats_election_plus_1s": excess <= election_bound,
                "request_rto_le_nats_election_plus_1s": request_excess <= election_bound,
            }
        ),
        "catch_up_le_10s": caught_up_s is not None and caught_up_s <= CATCH_UP_TARGET_S,
        **({"zero_client_errors": not failed} if fault.graceful else {}),
    }
    return report


def print_report(report: dict[str, Any]) -> None:
    j = report["journeys"]
    dup = report["duplicates"]
    lines = [
        f"fault                 {report['fault']}",
        f"journeys              {j['started']} started, {j['completed']} completed, "
        f"{j['failed']} failed ({j['failed_after_heal']} after the heal)",
        f"acknowledged          {report['steps_acknowledged']} journey steps, "
        f"{report['events_stored']} events stored, {report['emails']} emails",
        f"acknowledged but lost {len(report['acknowledged_but_lost'])}",
        f"duplicated effects    {len(dup['emails'])} emails, {len(dup['records'])} records, "
        f"{len(dup['signatures'])} signatures",
        f"longest wait          {report['longest_wait_s']:.2f}s for one step "
        f"({report['longest_wait_for_step'] or '?'}), "
        f"from {report['longest_wait_from_s']:.1f}s (slowest step before the fault "
        f"{report['slowest_step_before_fault_s']:.2f}s, RTO estimate "
        f"{report['rto_estimate_s']:.2f}s)",
        "slowest request       "
        + (
            f"{slow['operation']} {slow['seconds']:.2f}s at {slow['at_s']:.1f}s, "
            f"{slow['beyond_same_operation_before_fault_s']:.2f}s beyond the same operation "
            "before the fault"
            if (slow := report["slowest_request"])
            else "none"
        ),
        *[
            f"  then                {r['operation']} "
            f"+{r['beyond_same_operation_before_fault_s']:.2f}s at {r['at_s']:.1f}s"
            for r in report.get("slowest_requests", [])[1:4]
        ],
        f"platform-wide stall   {report['longest_stall_s']:.2f}s with journeys in flight and "
        "no step done, "
        f"from {report['longest_stall_at_s']:.1f}s (heal included)",
        "catch-up after heal   "
        + (f"{report['catch_up_s']:.2f}s" if report["catch_up_s"] is not None else "NOT caught up"),
        *(
            [
                f"NATS elections        {e['streams_elected']} stream leaders elected, the last "
                f"{e['last_elected_s']:.2f}s after the fault ({e['last_stream']})"
            ]
            if (e := report.get("nats_elections")) and e["last_elected_s"] is not None
            else []
        ),
    ]
    console.print()
    for line in lines:
        console.print(f"  {line}")
    for error in report["client_visible_errors"][:10]:
        console.print(
            f"  [red]✗[/] journey {error['journey']} ({error['tenant']}, {error['dc']}): "
            f"{error['error']}"
        )
    for item in report["acknowledged_but_lost"][:10]:
        console.print(f"  [red]lost[/] {item}")
    for kind, items in dup.items():
        for item in items[:10]:
            console.print(f"  [red]duplicate {kind[:-1]}[/] {item}")
    console.print()
    for target, met in report["targets"].items():
        console.print(f"  target {target:<26} {'[green]met[/]' if met else '[red]not met[/]'}")


def choose_fault(
    kill: str | None,
    freeze: str | None,
    rolling_restart: bool,
    kill_meta_leader: bool,
    kill_service: str | None,
    state: RunState,
) -> Fault:
    chosen = [
        f
        for f in (
            Fault("kill", kill) if kill else None,
            Fault("freeze", freeze) if freeze else None,
            Fault("rolling-restart") if rolling_restart else None,
            Fault("kill-meta-leader") if kill_meta_leader else None,
            Fault("kill-service", kill_service) if kill_service else None,
        )
        if f is not None
    ]
    if len(chosen) != 1:
        raise DrillRefused(
            "choose exactly one fault: --kill DC, --freeze DC, --rolling-restart, "
            "--kill-meta-leader or --kill-service NAME"
        )
    fault = chosen[0]
    if fault.kind != "kill-service" and not state.topology.ha:
        raise DrillRefused(
            f"{fault.label} needs a platform started with `mutualis up --ha` (an instance of "
            "each service in every datacenter); only --kill-service runs without it"
        )
    if fault.kind in ("kill", "freeze") and fault.target not in state.topology.datacenters:
        raise DrillRefused(f"no datacenter {fault.target!r} in {state.topology.datacenters}")
    if fault.kind == "kill-service" and fault.target not in {s.name for s in state.services}:
        raise DrillRefused(f"no service {fault.target!r} runs")
    return fault


def drill(
    run_dir: Annotated[
        Path, typer.Option("--run-dir", envvar="MUTUALIS_RUN_DIR", help="Where `up` runs.")
    ] = DEFAULT_RUN_DIR,
    kill: Annotated[
        str | None, typer.Option(help="SIGKILL a datacenter's NATS node(s) and instances.")
    ] = None,
    freeze: Annotated[
        str | None, typer.Option(help="SIGSTOP a datacenter, SIGCONT after --down-for.")
    ] = None,
    rolling_restart: Annotated[
        bool, typer.Option(help="SIGTERM and restart one datacenter at a time.")
    ] = False,
    kill_meta_leader: Annotated[
        bool, typer.Option(help="SIGKILL the JetStream meta leader's node.")
    ] = False,
    kill_service: Annotated[
        str | None, typer.Option(help="SIGKILL one instance of a service mid-handler.")
    ] = None,
    rate: Annotated[float, typer.Option(min=0.1, help="Journeys started per second.")] = 1.0,
    before: Annotated[float, typer.Option(min=0, help="Seconds of load before the fault.")] = 10,
    after: Annotated[
        float, typer.Option(min=0, help="Seconds of load after the fault (at least until healed).")
    ] = 20,
    down_for: Annotated[
        float,
        typer.Option(
            "--down-for", "--freeze-for", min=0, help="How long a killed/frozen part stays down."
        ),
    ] = 5,
    as_json: Annotated[
        Path | None, typer.Option("--json", help="Also write the report to this JSON file.")
    ] = None,
    kubernetes: Annotated[
        bool,
        typer.Option(
            "--kubernetes",
            help="Drill the platform on Kubernetes instead (with --kill-zone; see `mutualis k8s`).",
        ),
    ] = False,
    kill_zone: Annotated[
        str | None, typer.Option("--kill-zone", help="With --kubernetes: the zone to lose.")
    ] = None,
    # With --kubernetes, the options of `mutualis k8s status` / `mutualis k8s drill`.
    namespace: Annotated[
        str, typer.Option("--namespace", "-n", help="With --kubernetes: the release's namespace.")
    ] = "mutualis",
    release: Annotated[
        str, typer.Option(help="With --kubernetes: Helm release name.")
    ] = "mutualis",
    context: Annotated[
        str | None, typer.Option(help="With --kubernetes: kubeconfig context (default: current).")
    ] = None,
    server: Annotated[
        str | None,
        typer.Option(help="With --kubernetes: API server URL without kubeconfig (kubectl proxy)."),
    ] = None,
    timeout: Annotated[
        float, typer.Option(min=1, help="With --kubernetes: give up on the zone after this long.")
    ] = 600,
    poll: Annotated[
        float, typer.Option(min=0, help="With --kubernetes: seconds between two looks.")
    ] = 2.0,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="With --kubernetes: do not ask for confirmation.")
    ] = False,
) -> None:
    """Run the journey workload, inject a fault, heal, and report loss, duplicates and RTO."""
    if kubernetes or kill_zone is not None:
        # The same drill on a cluster: delete one zone's pods and measure the recovery.
        from mutualis_cli.k8s import run_zone_drill

        local_fault = any((kill, freeze, rolling_restart, kill_meta_leader, kill_service))
        if not kubernetes or kill_zone is None or local_fault:
            console.print(
                "[red]error:[/] on Kubernetes the fault is --kubernetes --kill-zone ZONE, "
                "alone (--kill, --freeze… are faults of a local platform)"
            )
            raise typer.Exit(2)
        run_zone_drill(
            kill_zone,
            namespace=namespace,
            release=release,
            context=context,
            server=server,
            timeout=timeout,
            poll=poll,
            yes=yes,
            json_file=as_json,
        )
        return
    state = load_state(run_dir.resolve())
    if state is None:
        console.print(
            "[red]error:[/] nothing runs from this run dir: start it with `mutualis up --ha`"
        )
        raise typer.Exit(1)
    use_identity(identity_of(state))
    try:
        fault = choose_fault(kill, freeze, rolling_restart, kill_meta_leader, kill_service, state)
        platform_urls(state)
    except (DrillRefused, PlatformNotRunning) as error:
        console.print(f"[red]error:[/] {error}")
        raise typer.Exit(2) from None
    console.print(f"drill {fault.label} against {run_dir}")
    report = asyncio.run(
        run_drill(
            run_dir.resolve(), fault, rate=rate, before=before, after=after, down_for=down_for
        )
    )
    print_report(report)
    if as_json is not None:
        as_json.parent.mkdir(parents=True, exist_ok=True)
        as_json.write_text(json.dumps(report, indent=2, default=str) + "\n")
        console.print(f"\n  report written to {as_json}")
    t = report["targets"]
    if not (t["rpo_0"] and t["no_duplicate_side_effects"]):
        raise typer.Exit(1)
