"""Which NATS nodes run where: datacenters, nodes per datacenter, ports, and their config."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mutualis_kernel.runtime.security import NatsSecurity
from mutualis_kernel.runtime.tls import TlsFiles, render_tls_block

DEFAULT_DATACENTERS = ("dc1", "dc2", "dc3")
CLUSTER_NAME = "mutualis"


@dataclass(frozen=True)
class NodeSpec:
    name: str
    datacenter: str
    host: str
    client_port: int
    monitor_port: int
    cluster_port: int
    store_dir: Path

    tls: bool = False
    #: The network namespace the node runs in (`ip netns exec`), None for the host's network.
    netns: str | None = None

    @property
    def client_url(self) -> str:
        return f"{'tls' if self.tls else 'nats'}://{self.host}:{self.client_port}"

    @property
    def monitor_url(self) -> str:
        return f"http://{self.host}:{self.monitor_port}"

    @property
    def route_url(self) -> str:
        return f"nats-route://{self.host}:{self.cluster_port}"


@dataclass(frozen=True)
class Topology:
    """A JetStream cluster stretched over datacenters, `nodes_per_datacenter` in each.

    Ports are consecutive from each base, node by node (dc1 first). With one datacenter and one
    node there is no cluster block at all: a plain single server, for R1 development.
    """

    run_dir: Path
    datacenters: tuple[str, ...] = DEFAULT_DATACENTERS
    nodes_per_datacenter: int = 1
    host: str = "127.0.0.1"
    client_port_base: int = 4222
    monitor_port_base: int = 8222
    cluster_port_base: int = 6222
    #: Client TLS, and mutual TLS on routes (every route must present a certificate of the CA).
    tls: TlsFiles | None = None
    #: When set, every client must authenticate with an nkey and gets only its permissions.
    security: NatsSecurity | None = None
    #: Datacenters whose nodes run in a network namespace of their own, with the address they
    #: listen on there: (datacenter, namespace, address). Lets a test cut a datacenter's
    #: network for real (a partition) rather than stop its processes.
    namespaces: tuple[tuple[str, str, str], ...] = ()

    @property
    def nodes(self) -> tuple[NodeSpec, ...]:
        specs = []
        index = 0
        placed = {dc: (namespace, address) for dc, namespace, address in self.namespaces}
        for dc in self.datacenters:
            netns, host = placed.get(dc, (None, self.host))
            for n in range(self.nodes_per_datacenter):
                name = f"{dc}-n{n + 1}"
                specs.append(
                    NodeSpec(
                        name=name,
                        datacenter=dc,
                        host=host,
                        netns=netns,
                        client_port=self.client_port_base + index,
                        monitor_port=self.monitor_port_base + index,
                        cluster_port=self.cluster_port_base + index,
                        store_dir=self.run_dir / "nats" / name,
                        tls=self.tls is not None,
                    )
                )
                index += 1
        return tuple(specs)

    @property
    def clustered(self) -> bool:
        return len(self.nodes) > 1

    @property
    def replicas(self) -> int:
        """One replica per datacenter, at most 3 (quorum 2 of 3 survives one lost DC)."""
        return min(3, len(self.datacenters)) if self.clustered else 1

    def nodes_in(self, datacenter: str) -> tuple[NodeSpec, ...]:
        return tuple(n for n in self.nodes if n.datacenter == datacenter)

    def client_urls(self, local_datacenter: str | None = None) -> list[str]:
        """Client URLs with the local datacenter's nodes first, the others as fallback."""
        nodes = sorted(self.nodes, key=lambda n: n.datacenter != local_datacenter)
        return [n.client_url for n in nodes]

    def render_config(self, node: NodeSpec) -> str:
        lines = [
            f"server_name: {node.name}",
            f"listen: {node.host}:{node.client_port}",
            f"http: {node.host}:{node.monitor_port}",
            f'server_tags: ["dc:{node.datacenter}"]',
            "max_payload: 8MB",
            "jetstream {",
            f'  store_dir: "{node.store_dir}"',
            '  unique_tag: "dc:"',
            "  max_memory_store: 256MB",
            "  max_file_store: 20GB",
            "}",
        ]
        if self.security is not None:
            lines.append(self.security.render())
        if self.tls is not None:
            lines.append(render_tls_block(self.tls, verify=False))
        if self.clustered:
            routes = ", ".join(n.route_url for n in self.nodes)
            lines += [
                "cluster {",
                f"  name: {CLUSTER_NAME}",
                f"  listen: {node.host}:{node.cluster_port}",
                f"  routes: [{routes}]",
            ]
            if self.tls is not None:
                lines.append(render_tls_block(self.tls, verify=True, indent="  "))
            lines.append("}")
        return "\n".join(lines) + "\n"
