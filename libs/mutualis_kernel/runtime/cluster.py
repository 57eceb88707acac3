"""A local JetStream cluster: every node of a topology, started, watched and stopped together."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager

from mutualis_kernel.runtime.process import NatsNode
from mutualis_kernel.runtime.topology import NodeSpec, Topology


class ClusterNotReady(TimeoutError):
    pass


class LocalCluster:
    """Real nats-server processes for a topology, with handles to hurt one datacenter."""

    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        log_dir = topology.run_dir / "nats"
        self.nodes = {
            spec.name: NatsNode(spec, topology.render_config(spec), log_dir)
            for spec in topology.nodes
        }

    # -- whole cluster -------------------------------------------------------------------
    def start(self, timeout: float = 30.0) -> None:
        for node in self.nodes.values():
            node.check_ports()
        try:
            for node in self.nodes.values():
                node.start()
            for node in self.nodes.values():
                node.wait_healthy(timeout)
            self.wait_meta_leader(timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """SIGTERM every node at once, then wait (a JetStream server can take over 1 s)."""
        for node in self.nodes.values():
            if node.frozen:
                node.thaw()
            node.signal(signal.SIGTERM)
        for node in self.nodes.values():
            if not node.wait_exit(15.0):
                node.kill()

    @property
    def client_urls(self) -> list[str]:
        return self.topology.client_urls()

    def urls_for(self, datacenter: str) -> list[str]:
        return self.topology.client_urls(datacenter)

    @property
    def replicas(self) -> int:
        return self.topology.replicas

    def meta_leader(self) -> str | None:
        """The name of the JetStream meta leader, as any live node sees it."""
        for node in self.nodes.values():
            if not node.running or node.frozen:
                continue
            jsz = node.jsz()
            if not jsz:
                continue
            meta = jsz.get("meta_cluster")
            if isinstance(meta, dict) and meta.get("leader"):
                return str(meta["leader"])
            if not self.topology.clustered:
                return node.spec.name
        return None

    def wait_meta_leader(self, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            leader = self.meta_leader()
            if leader:
                return leader
            time.sleep(0.05)
        raise ClusterNotReady(f"no JetStream meta leader after {timeout}s")

    # -- one datacenter ------------------------------------------------------------------
    def datacenter_nodes(self, datacenter: str) -> list[NatsNode]:
        found = [n for n in self.nodes.values() if n.spec.datacenter == datacenter]
        if not found:
            raise KeyError(f"no datacenter {datacenter!r} in {self.topology.datacenters}")
        return found

    def kill(self, datacenter: str) -> None:
        for node in self.datacenter_nodes(datacenter):
            node.kill()

    def freeze(self, datacenter: str) -> None:
        for node in self.datacenter_nodes(datacenter):
            node.freeze()

    def thaw(self, datacenter: str) -> None:
        for node in self.datacenter_nodes(datacenter):
            node.thaw()

    def terminate(self, datacenter: str) -> None:
        for node in self.datacenter_nodes(datacenter):
            node.terminate()

    def restart(self, datacenter: str, *, wipe: bool = False, timeout: float = 30.0) -> None:
        for node in self.datacenter_nodes(datacenter):
            if node.running:
                node.terminate()
            if wipe:
                node.wipe_store()
            node.start()
        for node in self.datacenter_nodes(datacenter):
            node.wait_healthy(timeout)

    def node_named(self, name: str) -> NatsNode:
        return self.nodes[name]

    def datacenter_of(self, node_name: str) -> str:
        return self.nodes[node_name].spec.datacenter

    @property
    def specs(self) -> tuple[NodeSpec, ...]:
        return self.topology.nodes

    @contextmanager
    def running(self) -> Iterator[LocalCluster]:
        self.start()
        try:
            yield self
        finally:
            self.stop()
