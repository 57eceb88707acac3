"""A retry waiting out an election is woken by the servers' news of the new leader."""

import asyncio
import uuid

import pytest
from nats.js.api import KeyValueConfig

from mutualis_kernel.bus.connection import connect
from mutualis_kernel.bus.kv import PatientKeyValue
from mutualis_kernel.bus.leaders import waiting_retries
from mutualis_kernel.config import KernelSettings
from mutualis_kernel.runtime import LocalCluster
from mutualis_kernel.testing.resources import new_key_value, with_replicas

pytestmark = pytest.mark.slow

WRITERS = 8


async def test_puts_caught_by_a_leader_crash_are_woken_by_the_news_of_its_successor(
    fresh_cluster: LocalCluster,
) -> None:
    name = f"news_{uuid.uuid4().hex[:8]}"
    operator = await connect(KernelSettings(dev_mode=True, nats_urls=fresh_cluster.client_urls))
    try:
        await new_key_value(operator.jetstream(), KeyValueConfig(bucket=name, replicas=3))
        info = await with_replicas(operator.jetstream(), f"KV_{name}")
        assert info.cluster is not None
        assert info.cluster.leader
        doomed = fresh_cluster.datacenter_of(info.cluster.leader)
    finally:
        await operator.close()
    survivor = next(dc for dc in fresh_cluster.topology.datacenters if dc != doomed)
    # Attached to a node that lives: only the news of the election can wake the writers (no
    # reconnect does), and the connection subscribes to that news as services' connections do.
    nc = await connect(KernelSettings(dev_mode=True, nats_urls=fresh_cluster.urls_for(survivor)))
    try:
        kv = PatientKeyValue(await nc.jetstream().key_value(name), deadline_s=30)
        await kv.put("before", b"1")
        woken_before = waiting_retries.woken_total

        fresh_cluster.kill(doomed)
        revisions = await asyncio.gather(
            *(kv.put(f"during.{n}", str(n).encode()) for n in range(WRITERS))
        )

        assert all(revision > 1 for revision in revisions)
        assert waiting_retries.woken_total > woken_before, "no retry was woken by the news"
        for n in range(WRITERS):
            assert (await kv.get(f"during.{n}")).value == str(n).encode()
    finally:
        await nc.close()
