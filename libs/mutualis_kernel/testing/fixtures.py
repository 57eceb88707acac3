"""pytest fixtures that start real nats-server processes.

- `nats_cluster`: a three-datacenter cluster shared by the tests of one module; tests that
  must not disturb their neighbours use unique stream/bucket names or `fresh_cluster`.
- `fresh_cluster`: a cluster of its own, for tests that kill, freeze or restart a datacenter.
- `nats_single`: one node without clustering (R1), for the fastest tests.
- `cluster_factory`: start any topology; every cluster started is stopped at teardown.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mutualis_kernel.runtime.cluster import LocalCluster
from mutualis_kernel.runtime.security import NatsSecurity
from mutualis_kernel.runtime.tls import TlsFiles
from mutualis_kernel.runtime.topology import DEFAULT_DATACENTERS, Topology
from mutualis_kernel.testing.ports import free_port_block

ClusterFactory = Callable[..., LocalCluster]


def _factory(base_dir: Path) -> tuple[ClusterFactory, list[LocalCluster]]:
    started: list[LocalCluster] = []

    def start(
        datacenters: tuple[str, ...] = DEFAULT_DATACENTERS,
        nodes_per_datacenter: int = 1,
        security: NatsSecurity | None = None,
        tls: TlsFiles | None = None,
    ) -> LocalCluster:
        count = len(datacenters) * nodes_per_datacenter
        topology = Topology(
            run_dir=base_dir / f"cluster{len(started)}",
            datacenters=datacenters,
            nodes_per_datacenter=nodes_per_datacenter,
            client_port_base=free_port_block(count),
            monitor_port_base=free_port_block(count),
            cluster_port_base=free_port_block(count),
            security=security,
            tls=tls,
        )
        cluster = LocalCluster(topology)
        started.append(cluster)
        cluster.start()
        return cluster

    return start, started


@pytest.fixture
def cluster_factory(tmp_path: Path) -> Iterator[ClusterFactory]:
    start, started = _factory(tmp_path)
    try:
        yield start
    finally:
        for cluster in started:
            cluster.stop()


@pytest.fixture(scope="module")
def nats_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    start, started = _factory(tmp_path_factory.mktemp("nats"))
    try:
        yield start()
    finally:
        for cluster in started:
            cluster.stop()


@pytest.fixture
def fresh_cluster(cluster_factory: ClusterFactory) -> LocalCluster:
    return cluster_factory()


@pytest.fixture(scope="module")
def nats_single(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    start, started = _factory(tmp_path_factory.mktemp("nats1"))
    try:
        yield start(datacenters=("dc1",))
    finally:
        for cluster in started:
            cluster.stop()
