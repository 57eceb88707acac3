"""A datacenter cut off by the network, for real (network namespaces, not signals).

The two datacenters left hold the quorum and go on acknowledging; the cut-off one
acknowledges nothing (no split brain); after the heal it catches up, and every event that was
acknowledged is stored exactly once. Skipped with the reason where namespaces cannot be made.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import nats.errors
import pytest
from nats.js.errors import APIError

from mutualis_kernel.bus.errors import PublishTimeout
from mutualis_kernel.bus.publisher import EventPublisher
from mutualis_kernel.runtime import LocalCluster
from mutualis_kernel.runtime.topology import DEFAULT_DATACENTERS, Topology
from mutualis_kernel.testing.demo_events import ParcelRegistered

from .conftest import ChaosBus, chaos_bus_on
from .netns import DatacenterNetworks, available

pytestmark = pytest.mark.slow

CUT_OFF = "dc2"


@pytest.fixture
def networks() -> Iterator[DatacenterNetworks]:
    reason = available()
    if reason is not None:
        pytest.skip(f"no real network partition on this machine: {reason}")
    networks = DatacenterNetworks(DEFAULT_DATACENTERS)
    try:
        # `available` probed what the machine must offer: a failure here is ours, not a skip.
        networks.create()
        yield networks
    finally:
        networks.destroy()


@pytest.fixture
async def partitionable(
    networks: DatacenterNetworks, tmp_path: Path
) -> AsyncIterator[tuple[ChaosBus, DatacenterNetworks]]:
    # Each node has a network of its own, so the usual ports serve every one of them.
    topology = Topology(run_dir=tmp_path, namespaces=networks.placement())
    cluster = LocalCluster(topology)
    cluster.start()
    try:
        async with chaos_bus_on(cluster) as bus:
            yield bus, networks
    finally:
        cluster.stop()


async def replica_current(bus: ChaosBus, node: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            info = await bus.js.stream_info("DEMO_EVENTS")
        except (nats.errors.TimeoutError, APIError):
            info = None
        cluster = info.cluster if info is not None else None
        if cluster is not None and cluster.leader is not None:
            replica = next((r for r in cluster.replicas or [] if r.name == node), None)
            if cluster.leader == node or (replica and replica.current and not replica.lag):
                return
        await asyncio.sleep(0.25)
    raise AssertionError(f"{node} did not catch up within {timeout:.0f}s of the heal")


async def test_a_cut_off_datacenter_acknowledges_nothing_and_the_others_lose_nothing(
    partitionable: tuple[ChaosBus, DatacenterNetworks],
) -> None:
    bus, networks = partitionable
    workload = bus.workload()
    running = asyncio.create_task(workload.run())
    await workload.wait_for_acks(100)
    # A client of the cut-off datacenter, talking to its node only.
    local = await nats.connect(servers=bus.cluster.urls_for(CUT_OFF)[:1], connect_timeout=5)
    cut_off = EventPublisher(
        local.jetstream(), source_service="demo", datacenter=CUT_OFF, deadline_s=5
    )
    try:
        before = await cut_off.publish(
            ParcelRegistered(reference="before", weight_kg=1.0),
            tenant="bordeaux",
            aggregate_id="before",
        )
        workload.acknowledged.append(before.envelope.id)  # acknowledged there while whole

        networks.partition(CUT_OFF)

        # The majority goes on (after an election when the cut-off node led the stream).
        await workload.wait_for_acks(200, timeout=60)
        # The cut-off datacenter has no quorum: nothing published there is acknowledged.
        with pytest.raises(PublishTimeout):
            await cut_off.publish(
                ParcelRegistered(reference="cut-off", weight_kg=1.0),
                tenant="bordeaux",
                aggregate_id="cut-off",
            )

        networks.heal(CUT_OFF)
        await workload.wait_for_acks(100, timeout=60)
    finally:
        workload.stop()
        await running
        await local.close()

    await replica_current(bus, f"{CUT_OFF}-n1")
    stored = await bus.stored_ids()
    missing = set(workload.acknowledged) - set(stored)
    if missing:
        info = await bus.js.stream_info("DEMO_EVENTS")
        raise AssertionError(
            f"{len(missing)} of {len(workload.acknowledged)} acknowledged events lost: "
            f"{len(stored)} read back, the stream holds {info.state.messages} messages"
        )
    assert max(stored.values()) == 1, "an event was stored twice"
