"""Two and three nodes per datacenter: the same configuration places R3 streams across
datacenters, and losing a whole datacenter (all its nodes) loses no acknowledged event.

With six servers the meta group's quorum is 4 of 6; a lost datacenter leaves exactly 4, so
the cluster keeps creating streams and electing leaders. With nine it is 5 of 9, and a lost
datacenter leaves 6. Each R3 stream still has one replica per datacenter
(`unique_tag: "dc:"`), so its quorum (2 of 3) survives too.
"""

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import TypeVar

import nats.errors
import pytest

from mutualis_kernel.testing.fixtures import ClusterFactory

from .conftest import ChaosBus, chaos_bus_on

pytestmark = pytest.mark.slow

STREAM = "DEMO_EVENTS"
T = TypeVar("T")


@pytest.fixture(params=[2, 3], ids=["2-per-datacenter", "3-per-datacenter"])
async def wide_bus(
    cluster_factory: ClusterFactory, request: pytest.FixtureRequest
) -> AsyncIterator[ChaosBus]:
    async with chaos_bus_on(cluster_factory(nodes_per_datacenter=request.param)) as bus:
        yield bus


async def replica_nodes(bus: ChaosBus) -> list[str]:
    info = await bus.js.stream_info(STREAM)
    assert info.cluster is not None
    assert info.cluster.leader is not None
    return [info.cluster.leader, *(r.name for r in info.cluster.replicas or [] if r.name)]


async def patiently(operation: Callable[[], Awaitable[T]]) -> T:
    """Ask again while the cluster is still electing (no responders, 503, timeouts)."""
    for _ in range(100):
        try:
            return await operation()
        except (nats.errors.Error, TimeoutError):
            await asyncio.sleep(0.2)
    return await operation()


async def stored_ids(bus: ChaosBus) -> Counter[str]:
    """Every event id in the stream, read message by message from the surviving quorum."""
    info = await patiently(lambda: bus.js.stream_info(STREAM))
    ids: Counter[str] = Counter()
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        message = await patiently(partial(bus.js.get_msg, STREAM, seq))
        ids[(message.headers or {})["ce-id"]] += 1
    return ids


async def test_an_r3_stream_has_one_replica_in_each_datacenter(wide_bus: ChaosBus) -> None:
    assert len(wide_bus.cluster.nodes) in (6, 9)
    nodes = await replica_nodes(wide_bus)
    assert len(nodes) == 3
    datacenters = {wide_bus.cluster.datacenter_of(node) for node in nodes}
    assert datacenters == {"dc1", "dc2", "dc3"}


async def test_losing_a_whole_datacenter_loses_no_acknowledged_event(wide_bus: ChaosBus) -> None:
    # Take the datacenter that leads the stream: the hardest case, an election must follow.
    leader = (await replica_nodes(wide_bus))[0]
    lost = wide_bus.cluster.datacenter_of(leader)

    workload = wide_bus.workload()
    task = asyncio.create_task(workload.run())
    await workload.wait_for_acks(200)
    wide_bus.cluster.kill(lost)
    await workload.wait_for_acks(200, timeout=45)
    workload.stop()
    await task

    assert workload.errors == []
    stored = await stored_ids(wide_bus)
    missing = set(workload.acknowledged) - set(stored)
    assert not missing, f"{len(missing)} acknowledged events lost with {lost}"
    assert max(stored.values()) == 1, "an event was stored twice"
    # The stream now leads from a surviving datacenter.
    leader_now = (await patiently(lambda: replica_nodes(wide_bus)))[0]
    assert wide_bus.cluster.datacenter_of(leader_now) != lost
