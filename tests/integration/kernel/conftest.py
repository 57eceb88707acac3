from collections.abc import AsyncIterator
from dataclasses import dataclass

import nats
import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from mutualis_kernel.bus.publisher import EventPublisher
from mutualis_kernel.bus.store import EventStore
from mutualis_kernel.runtime import LocalCluster
from mutualis_kernel.streams import (
    KERNEL_RESOURCES,
    Resources,
    apply_resources_patiently,
    events_stream,
)
from mutualis_kernel.testing.demo_events import demo_catalog

DEMO_RESOURCES = KERNEL_RESOURCES + Resources(streams=(events_stream("demo", "Demo events"),))


@dataclass
class Bus:
    nc: NATS
    js: JetStreamContext
    publisher: EventPublisher
    store: EventStore


async def open_bus(cluster: LocalCluster) -> Bus:
    nc = await nats.connect(
        servers=cluster.client_urls, max_reconnect_attempts=-1, reconnect_time_wait=0.1
    )
    js = nc.jetstream()
    await apply_resources_patiently(js, DEMO_RESOURCES, cluster.replicas)
    publisher = EventPublisher(js, source_service="demo", datacenter="dc1")
    return Bus(nc, js, publisher, EventStore(js, demo_catalog))


@pytest.fixture
async def bus(nats_cluster: LocalCluster) -> AsyncIterator[Bus]:
    opened = await open_bus(nats_cluster)
    try:
        yield opened
    finally:
        await opened.nc.close()
