"""`mutualis up` and `mutualis down`: the whole local platform, started and stopped in order.

Start: check every port, start the NATS nodes (one per datacenter, or one alone with
`--single`), wait for the JetStream meta leader, apply the kernel's and the services'
resources, then start each installed service (one instance, or one per datacenter with `--ha`)
and wait for its `/readyz`. The state file is rewritten after each step, so `down` can clean up
even after the supervisor itself was killed. Stop: services first (newest first), then NATS.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from rich.console import Console
from rich.table import Table

from mutualis_cli.resources import apply_platform_resources, report_lines
from mutualis_cli.rundir import (
    NodeState,
    RunState,
    ServiceState,
    TopologyState,
    credentials_dir,
    load_state,
    remove_state,
    save_state,
    tls_dir,
)
from mutualis_cli.supervisor import (
    NATS_STOP_TIMEOUT_S,
    SERVICE_STOP_TIMEOUT_S,
    LogFollower,
    ServiceLaunch,
    process_alive,
    stop_process,
    stop_processes,
    wait_gone,
)
from mutualis_cli.supervisor import wait_ready as wait_service_ready
from mutualis_cli.target import identity_of, use_identity
from mutualis_cli.wiring import sink_launches, trust_launches, with_shared_environment
from mutualis_kernel.runtime import LocalCluster, PortInUse, Topology
from mutualis_kernel.runtime.process import port_is_free
from mutualis_kernel.runtime.security import build_security
from mutualis_kernel.runtime.tls import ensure_dev_tls
from mutualis_kernel.runtime.topology import DEFAULT_DATACENTERS
from mutualis_kernel.service import ServiceManifest

NATS_MARKER = "nats-server"
#: Ports of one datacenter's instances are this far from the previous datacenter's.
DATACENTER_PORT_STRIDE = 10
#: identity's default port: each service's port is --port-base-services plus its offset.
_FIRST_SERVICE_PORT = 8001


class AlreadyRunning(RuntimeError):
    pass


class BadOptions(ValueError):
    pass


@dataclass(frozen=True)
class UpOptions:
    run_dir: Path
    single: bool = False
    ha: bool = False
    nats_port: int = 4222
    nats_monitor_port: int = 8222
    nats_cluster_port: int = 6222
    port_base_services: int = 8001
    no_services: bool = False
    start_timeout_s: float = 30.0
    #: TLS for clients, mutual TLS between datacenters (bench/results/transport.json: the
    #: cost is small next to what the services spend per event).
    tls: bool = True
    #: One nkey per service with the permissions its manifest implies; the CLI is `operator`.
    nkeys: bool = True

    def topology(self, manifests: Sequence[ServiceManifest] = ()) -> Topology:
        """The NATS cluster; `manifests` decide each service's permissions when nkeys are on."""
        if self.single and self.ha:
            raise BadOptions("--ha needs three datacenters; it cannot be combined with --single")
        run_dir = self.run_dir.resolve()
        return Topology(
            run_dir=run_dir,
            datacenters=("dc1",) if self.single else DEFAULT_DATACENTERS,
            client_port_base=self.nats_port,
            monitor_port_base=self.nats_monitor_port,
            cluster_port_base=self.nats_cluster_port,
            tls=ensure_dev_tls(tls_dir(run_dir)) if self.tls else None,
            security=build_security(credentials_dir(run_dir), manifests) if self.nkeys else None,
        )


def plan_platform(
    options: UpOptions, topology: Topology, manifests: Sequence[ServiceManifest]
) -> list[ServiceLaunch]:
    """Auxiliary processes (the dev timestamp authority), then every service instance."""
    if options.no_services:
        return []
    trust, trust_env = trust_launches(options, topology.run_dir)
    sinks, sinks_env = sink_launches(options, topology.run_dir)
    shared = {**trust_env, **sinks_env}
    return [*trust, *sinks, *plan_services(options, topology, manifests, shared)]


def plan_services(
    options: UpOptions,
    topology: Topology,
    manifests: Sequence[ServiceManifest],
    shared: Mapping[str, str] | None = None,
) -> list[ServiceLaunch]:
    """Every service instance to start, in start order, with its port and NATS URLs.

    A service keeps the offset of its default port (identity 8001, parapheur 8002…); with
    `--ha` the instance in the n-th datacenter adds 10·n (identity 8001, 8011, 8021).
    """
    if options.no_services:
        return []
    datacenters = topology.datacenters if options.ha else topology.datacenters[:1]
    run_dir = topology.run_dir
    launches = []
    for manifest in manifests:
        offset = manifest.default_port - _FIRST_SERVICE_PORT
        nats_env = nats_client_environment(topology, manifest.name)
        for index, datacenter in enumerate(datacenters):
            label = f"{manifest.name}@{datacenter}"
            launches.append(
                ServiceLaunch(
                    name=manifest.name,
                    datacenter=datacenter,
                    port=options.port_base_services + offset + DATACENTER_PORT_STRIDE * index,
                    nats_urls=topology.client_urls(datacenter),
                    replicas=topology.replicas,
                    log_path=run_dir / "logs" / f"{label}.log",
                    data_dir=run_dir / "services" / label,
                    shared_env=nats_env,
                )
            )
    return with_shared_environment(launches, shared or {})


def nats_client_environment(topology: Topology, user: str) -> dict[str, str]:
    """The settings a NATS client of this topology needs: the CA, and its own seed."""
    env: dict[str, str] = {}
    if topology.tls is not None:
        env["MUTUALIS_NATS_TLS_CA_FILE"] = str(topology.tls.ca)
    if topology.security is not None:
        env["MUTUALIS_NATS_NKEY_SEED_FILE"] = str(topology.security.seed_for(user))
    return env


def check_ports(cluster: LocalCluster, launches: Sequence[ServiceLaunch]) -> None:
    """Refuse before starting anything: a half-started platform is worse than none."""
    for node in cluster.nodes.values():
        node.check_ports()
    for launch in launches:
        if not port_is_free(launch.host, launch.port):
            raise PortInUse(launch.port, f"HTTP of {launch.label}", "--port-base-services")


def refuse_if_running(run_dir: Path) -> None:
    state = load_state(run_dir)
    if state is None:
        return
    if any(pid is not None and process_alive(pid) for pid in _all_pids(state)):
        raise AlreadyRunning(
            f"the platform already runs from {run_dir} (see `mutualis status`); "
            "stop it with `mutualis down` first"
        )
    remove_state(run_dir)  # left by an `up` that died: nothing of it runs any more


def start_platform(
    options: UpOptions,
    manifests: Sequence[ServiceManifest],
    console: Console,
    *,
    supervisor_pid: int | None = None,
) -> RunState:
    """Start NATS, apply resources, start services; on any failure stop what was started."""
    topology = options.topology(manifests)
    refuse_if_running(options.run_dir)
    cluster = LocalCluster(topology)
    launches = plan_platform(options, topology, manifests)
    check_ports(cluster, launches)
    state = RunState(
        run_dir=str(options.run_dir),
        supervisor_pid=supervisor_pid,
        topology=TopologyState(
            datacenters=list(topology.datacenters),
            replicas=topology.replicas,
            client_port_base=options.nats_port,
            monitor_port_base=options.nats_monitor_port,
            cluster_port_base=options.nats_cluster_port,
            service_port_base=options.port_base_services,
            ha=options.ha,
            tls=options.tls,
            nkeys=options.nkeys,
        ),
    )
    use_identity(identity_of(state))
    try:
        with console.status("starting NATS…") as progress:
            progress.update(f"starting {len(cluster.nodes)} NATS node(s), electing a leader…")
            state.nodes = [_node_state(cluster, name) for name in cluster.nodes]
            try:
                cluster.start(timeout=options.start_timeout_s)
            finally:
                state.nodes = [_node_state(cluster, name) for name in cluster.nodes]
                save_state(state)
            console.print(
                f"[green]✓[/] NATS up, meta leader {cluster.meta_leader()}, "
                f"replicas {topology.replicas}"
            )
            progress.update("applying JetStream resources…")
            report = asyncio.run(
                apply_platform_resources(cluster.client_urls, manifests, topology.replicas)
            )
            console.print("[green]✓[/] JetStream resources applied")
            for line in report_lines(report):
                console.print(f"    {line}", highlight=False)
            if not manifests and not options.no_services:
                console.print("[yellow]![/] no service is installed: NATS only")
            for launch in launches:
                progress.update(f"starting {launch.label} on port {launch.port}…")
                pid = launch.start()
                state.services.append(
                    ServiceState(
                        name=launch.name,
                        datacenter=launch.datacenter,
                        port=launch.port,
                        url=launch.url,
                        pid=pid,
                        log_path=str(launch.log_path),
                        ready_path=launch.ready_path,
                    )
                )
                save_state(state)
                wait_service_ready(
                    launch.label,
                    launch.url,
                    pid,
                    launch.log_path,
                    options.start_timeout_s,
                    launch.ready_path,
                )
                console.print(f"[green]✓[/] {launch.label} ready at {launch.url}")
    except BaseException:
        stop_platform(state, console, quiet=True)
        raise
    return state


def _node_state(cluster: LocalCluster, name: str) -> NodeState:
    node = cluster.nodes[name]
    spec = node.spec
    return NodeState(
        name=spec.name,
        datacenter=spec.datacenter,
        client_url=spec.client_url,
        monitor_url=spec.monitor_url,
        client_port=spec.client_port,
        monitor_port=spec.monitor_port,
        cluster_port=spec.cluster_port,
        pid=node.pid,
    )


def _all_pids(state: RunState) -> list[int]:
    pids = [s.pid for s in state.services] + [n.pid for n in state.nodes]
    if state.supervisor_pid is not None:
        pids.append(state.supervisor_pid)
    return [p for p in pids if p is not None]


def placement_table(state: RunState) -> Table:
    table = Table(title=f"Mutualis — run dir {state.run_dir}")
    table.add_column("datacenter")
    table.add_column("component")
    table.add_column("address")
    table.add_column("monitoring")
    table.add_column("pid", justify="right")
    for node in state.nodes:
        table.add_row(
            node.datacenter,
            f"nats {node.name}",
            node.client_url,
            node.monitor_url,
            str(node.pid or "-"),
        )
    for service in state.services:
        table.add_row(
            service.datacenter,
            service.name,
            service.url,
            service.ready_path,
            str(service.pid or "-"),
        )
    return table


def login_help(state: RunState) -> str | None:
    """How to log in to what just started (identity's demo accounts), or None without identity."""
    identity = next((s for s in state.services if s.name == "identity"), None)
    if identity is None:
        return None
    from identity.devseed import DEMO_CLIENT_ID, DEMO_PASSWORD, DEMO_REDIRECT_URI

    return "\n".join(
        (
            f"Log in: OpenID Connect issuer {identity.url} (discovery: "
            f"{identity.url}/.well-known/openid-configuration)",
            f"  demo client {DEMO_CLIENT_ID} (public, PKCE), redirect URI {DEMO_REDIRECT_URI}",
            f"  every demo account's password: {DEMO_PASSWORD} — agents agent.<commune>, "
            "signataire.<commune> (TOTP), archiviste.<commune>, admin.<commune>; "
            "sre.metropole (platform)",
            "  all accounts, clients and TOTP secrets: `mutualis dev credentials`; "
            "a whole working day: `mutualis demo`",
        )
    )


# -- running attached -----------------------------------------------------------------------
class _Stop(Exception):
    pass


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop


def follow_until_stopped(state: RunState, console: Console) -> None:
    """Print the services' logs, prefixed with service@dc, until Ctrl-C or SIGTERM."""
    previous = signal.signal(signal.SIGTERM, _raise_stop)
    follower = LogFollower({s.label: Path(s.log_path) for s in state.services})
    reported_dead: set[str] = set()

    def emit(label: str, line: str) -> None:
        console.print(f"[cyan]{label:>24}[/] | {line}", highlight=False, markup=True)

    try:
        console.print("[dim]following service logs; Ctrl-C stops everything[/]")
        while True:
            follower.poll(emit)
            for service in state.services:
                if (
                    service.pid
                    and service.label not in reported_dead
                    and not process_alive(service.pid)
                ):
                    reported_dead.add(service.label)
                    console.print(f"[red]✗ {service.label} (pid {service.pid}) exited[/]")
            time.sleep(0.2)
    except (KeyboardInterrupt, _Stop):
        console.print("\n[dim]stopping…[/]")
    finally:
        signal.signal(signal.SIGTERM, previous)
        follower.poll(emit)


# -- stopping -------------------------------------------------------------------------------
def stop_platform(state: RunState, console: Console, *, quiet: bool = False) -> None:
    """Services first (newest first, each given time to drain), then every NATS node at once."""
    for service in reversed(state.services):
        if service.pid is None:
            continue
        killed = stop_process(service.pid, service.name, SERVICE_STOP_TIMEOUT_S)
        if not quiet:
            verb = "killed (did not stop in time)" if killed else "stopped"
            console.print(f"[green]✓[/] {service.label} {verb}")
    nodes = [(n.pid, NATS_MARKER) for n in state.nodes if n.pid is not None]
    killed_nodes = stop_processes(nodes, NATS_STOP_TIMEOUT_S)
    if not quiet and nodes:
        suffix = f" ({len(killed_nodes)} killed)" if killed_nodes else ""
        console.print(f"[green]✓[/] NATS stopped{suffix}")
    remove_state(Path(state.run_dir))


def down(run_dir: Path, console: Console) -> bool:
    """Stop what the state file lists; False when there was nothing to stop."""
    state = load_state(run_dir)
    if state is None:
        return False
    supervisor = state.supervisor_pid
    if supervisor is not None and process_alive(supervisor):
        # An attached `up` stops its own children in order and removes the state file.
        stop_process(supervisor, "mutualis", SERVICE_STOP_TIMEOUT_S + NATS_STOP_TIMEOUT_S + 5)
    stop_platform(state, console)
    return True


# -- one instance again ---------------------------------------------------------------------
def options_of(state: RunState) -> UpOptions:
    """The options `up` ran with, rebuilt from the state file."""
    topology = state.topology
    return UpOptions(
        run_dir=Path(state.run_dir),
        single=len(topology.datacenters) == 1,
        ha=topology.ha,
        nats_port=topology.client_port_base,
        nats_monitor_port=topology.monitor_port_base,
        nats_cluster_port=topology.cluster_port_base,
        port_base_services=topology.service_port_base,
        tls=topology.tls,
        nkeys=topology.nkeys,
    )


def restart_service(
    run_dir: Path, label: str, manifests: Sequence[ServiceManifest], *, kill: bool = False
) -> ServiceState:
    """Stop one instance (SIGTERM, or SIGKILL with `kill`) and start it again with the same
    settings, as an SRE does after a fix or a drill does to a service mid-journey."""
    state = load_state(run_dir)
    if state is None:
        raise AlreadyRunning(f"nothing runs from {run_dir}")
    current = next((s for s in state.services if s.label == label), None)
    if current is None:
        known = ", ".join(s.label for s in state.services)
        raise BadOptions(f"no instance {label!r} runs; running: {known}")
    options = options_of(state)
    running_names = {s.name for s in state.services}
    running = [m for m in manifests if m.name in running_names]
    launches = plan_platform(options, options.topology(running), running)
    launch = next(launch for launch in launches if launch.label == label)
    if current.pid is not None:
        if kill:
            with contextlib.suppress(ProcessLookupError):
                os.kill(current.pid, signal.SIGKILL)
        else:
            stop_process(current.pid, current.name, SERVICE_STOP_TIMEOUT_S)
        wait_gone([current.pid], SERVICE_STOP_TIMEOUT_S)
    pid = launch.start()
    current.pid = pid
    save_state(state)
    wait_service_ready(
        launch.label, launch.url, pid, launch.log_path, options.start_timeout_s, launch.ready_path
    )
    return current
