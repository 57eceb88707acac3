"""Shared pieces of the chaos tests: a publisher that keeps going and counts what it saw."""

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from mutualis_kernel.bus.connection import connect
from mutualis_kernel.bus.kv import stream_messages
from mutualis_kernel.bus.publisher import EventPublisher
from mutualis_kernel.config import KernelSettings
from mutualis_kernel.runtime import LocalCluster
from mutualis_kernel.streams import (
    KERNEL_RESOURCES,
    Resources,
    apply_resources_patiently,
    events_stream,
)
from mutualis_kernel.testing.demo_events import ParcelRegistered


@dataclass
class Workload:
    """Publishes steadily; records every acknowledgement, every error and the longest stall."""

    publisher: EventPublisher
    acknowledged: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    longest_stall_s: float = 0.0
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, workers: int = 2) -> None:
        await asyncio.gather(*(self._worker(w) for w in range(workers)))

    async def _worker(self, worker: int) -> None:
        n = 0
        last_ack = time.monotonic()
        while not self._stop.is_set():
            n += 1
            try:
                stored = await self.publisher.publish(
                    ParcelRegistered(reference=f"W{worker}-{n}", weight_kg=1.0),
                    tenant="bordeaux",
                    aggregate_id=f"w{worker}-{n}",
                )
            except Exception as error:
                self.errors.append(repr(error))
                continue
            now = time.monotonic()
            self.longest_stall_s = max(self.longest_stall_s, now - last_ack)
            last_ack = now
            self.acknowledged.append(stored.envelope.id)
            await asyncio.sleep(0.002)

    def stop(self) -> None:
        self._stop.set()

    async def wait_for_acks(self, count: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        target = len(self.acknowledged) + count
        while len(self.acknowledged) < target:
            if time.monotonic() > deadline:
                raise AssertionError(f"only {len(self.acknowledged)} acks, wanted {target}")
            await asyncio.sleep(0.02)


@dataclass
class ChaosBus:
    cluster: LocalCluster
    nc: NATS
    js: JetStreamContext
    publisher: EventPublisher

    def workload(self) -> Workload:
        return Workload(self.publisher)

    async def stored_ids(self) -> Counter[str]:
        """Every event id in the stream, read through the current quorum.

        The kernel's exact reader goes on until it has what the stream leader holds: a read
        consumer placed on the replica that was just healed sees only what that replica has
        caught up on, and a fetch can time out while the cluster settles (both once reported
        events as lost that were only not read yet)."""
        messages = stream_messages(
            self.js, "DEMO_EVENTS", "evt.demo.>", timeout=60, creation_deadline_s=60
        )
        return Counter([(message.headers or {})["ce-id"] async for message in messages])


@asynccontextmanager
async def chaos_bus_on(cluster: LocalCluster) -> AsyncIterator[ChaosBus]:
    """The demo events stream on `cluster`, published to from dc1 through the kernel."""
    # The kernel's own connection: local datacenter first, pings that reveal a frozen node.
    nc = await connect(KernelSettings(dev_mode=True, nats_urls=cluster.urls_for("dc1")))
    js = nc.jetstream()
    await apply_resources_patiently(
        js, KERNEL_RESOURCES + Resources(streams=(events_stream("demo", "chaos"),)), 3
    )
    publisher = EventPublisher(js, source_service="demo", datacenter="dc1", deadline_s=30)
    try:
        yield ChaosBus(cluster, nc, js, publisher)
    finally:
        await nc.close()


@pytest.fixture
async def chaos_bus(fresh_cluster: LocalCluster) -> AsyncIterator[ChaosBus]:
    async with chaos_bus_on(fresh_cluster) as bus:
        yield bus
