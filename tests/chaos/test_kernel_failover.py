"""Killing the stream leader mid-publish loses no acknowledged event and stores none twice."""

import asyncio
import collections

import nats
import pytest

from mutualis_kernel.bus.kv import stream_messages
from mutualis_kernel.bus.publisher import EventPublisher
from mutualis_kernel.runtime import LocalCluster
from mutualis_kernel.streams import (
    KERNEL_RESOURCES,
    Resources,
    apply_resources_patiently,
    events_stream,
)
from mutualis_kernel.testing.demo_events import ParcelRegistered

pytestmark = pytest.mark.slow

EVENTS = 5_000
PUBLISHERS = 4


async def test_sigkill_of_the_stream_leader_while_publishing_5000_events(
    fresh_cluster: LocalCluster,
) -> None:
    nc = await nats.connect(
        servers=fresh_cluster.client_urls, max_reconnect_attempts=-1, reconnect_time_wait=0.1
    )
    js = nc.jetstream()
    resources = KERNEL_RESOURCES + Resources(streams=(events_stream("demo", "chaos"),))
    await apply_resources_patiently(js, resources, replicas=3)
    publisher = EventPublisher(js, source_service="demo", datacenter="dc1", deadline_s=30)

    acknowledged: list[str] = []
    a_fifth_acknowledged = asyncio.Event()
    killed = asyncio.Event()

    async def publish_share(worker: int) -> None:
        for n in range(worker, EVENTS, PUBLISHERS):
            stored = await publisher.publish(
                ParcelRegistered(reference=f"P{n}", weight_kg=1.0),
                tenant="bordeaux",
                aggregate_id=f"parcel-{n}",
            )
            acknowledged.append(stored.envelope.id)
            if len(acknowledged) >= EVENTS // 5:
                a_fifth_acknowledged.set()

    async def kill_the_leader() -> None:
        await a_fifth_acknowledged.wait()
        leader = (await js.stream_info("DEMO_EVENTS")).cluster.leader
        assert leader is not None
        fresh_cluster.node_named(leader).kill()
        killed.set()

    await asyncio.gather(kill_the_leader(), *(publish_share(w) for w in range(PUBLISHERS)))
    assert killed.is_set()

    # Read everything back from the surviving quorum: the kernel's exact reader goes on until
    # it has what the stream leader holds (a fetch timing out while the cluster settles after
    # the kill is not the end of the stream).
    stored_ids: collections.Counter[str] = collections.Counter(
        [(m.headers or {})["ce-id"] async for m in stream_messages(js, "DEMO_EVENTS", "evt.demo.>")]
    )
    await nc.close()

    assert len(acknowledged) == EVENTS
    assert set(acknowledged) == set(stored_ids), "an acknowledged event was lost"
    assert max(stored_ids.values()) == 1, "an event was stored twice"
