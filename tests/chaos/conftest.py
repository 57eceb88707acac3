"""Shared pieces of the chaos tests: a publisher that keeps going and counts what it saw."""

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import nats
import nats.js.errors
import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from mutualis_kernel.bus.connection import connect
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
        """Every event id in the stream, read through the current quorum."""
        # Creating a consumer needs a meta leader, which may still be being elected.
        for _ in range(60):
            try:
                subscription = await self.js.pull_subscribe(
                    "evt.demo.>",
                    durable=None,
                    stream="DEMO_EVENTS",
                    config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL, inactive_threshold=30),
                )
                break
            except (nats.errors.TimeoutError, nats.js.errors.Error):
                await asyncio.sleep(0.5)
        else:
            raise AssertionError("no consumer could be created to read the stream back")
        ids: Counter[str] = Counter()
        # Done when the consumer says nothing is left, not at the first quiet fetch: a fetch
        # can time out while the cluster settles after a heal, and stopping there would
        # report events as lost that were only not read yet.
        deadline = asyncio.get_running_loop().time() + 120
        while True:
            try:
                batch = await subscription.fetch(1000, timeout=2)
            except nats.errors.TimeoutError:
                try:
                    info = await subscription.consumer_info()
                except (nats.errors.TimeoutError, nats.js.errors.Error):
                    info = None
                if info is not None and not info.num_pending and not info.num_ack_pending:
                    break
                if asyncio.get_running_loop().time() > deadline:
                    raise AssertionError(
                        f"the stream could not be read back: {len(ids)} events read, "
                        f"{info.num_pending if info else '?'} still pending"
                    ) from None
                continue
            except nats.js.errors.ServiceUnavailableError:
                await asyncio.sleep(0.2)  # just after a datacenter loss: ask again
                continue
            for message in batch:
                ids[(message.headers or {})["ce-id"]] += 1
                await message.ack()
        await subscription.unsubscribe()
        return ids


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
