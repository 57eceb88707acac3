"""Scanning a KV bucket's current values: every live entry exactly once, never a premature end."""

import asyncio
import uuid
from contextlib import aclosing

import nats
import pytest
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig

from mutualis_kernel.bus.kv import (
    PatientKeyValue,
    current_entries,
    current_keys,
    stream_messages,
)
from mutualis_kernel.runtime import LocalCluster
from mutualis_kernel.testing.resources import new_key_value, with_replicas

from .conftest import Bus


async def bucket(js: JetStreamContext) -> str:
    name = f"scan_{uuid.uuid4().hex[:8]}"
    await new_key_value(js, KeyValueConfig(bucket=name, history=3, replicas=3))
    return name


async def test_a_scan_returns_the_latest_value_of_every_live_key_under_the_pattern(
    bus: Bus,
) -> None:
    name = await bucket(bus.js)
    # Writing is not what is tested: ride out an election of the fresh bucket's stream, as
    # the services do (CI: a put timed out on a loaded machine).
    kv = PatientKeyValue(await bus.js.key_value(name))
    for n in range(300):
        await kv.put(f"merignac.{n}", b"v1")
    await kv.put("merignac.7", b"v2")
    await kv.delete("merignac.8")
    await kv.put("pessac.1", b"elsewhere")

    entries = {e.key: e async for e in current_entries(bus.js, name, "merignac.*")}

    assert len(entries) == 299
    assert "merignac.8" not in entries
    assert "pessac.1" not in entries
    assert entries["merignac.7"].value == b"v2"
    assert entries["merignac.7"].revision == (await kv.get("merignac.7")).revision


async def test_an_empty_pattern_ends_at_once_with_nothing(bus: Bus) -> None:
    name = await bucket(bus.js)
    assert await current_keys(bus.js, name, "nobody.*") == []


@pytest.mark.parametrize("round_", range(3))
async def test_scans_started_right_after_writes_never_miss_an_entry(bus: Bus, round_: int) -> None:
    # The shape of the race nats-py's watch() loses: values in flight when the scan starts.
    name = await bucket(bus.js)
    kv = await bus.js.key_value(name)
    for n in range(5):
        await kv.put(f"t.{n}", b"x")
    counts = await asyncio.gather(*(current_keys(bus.js, name, "t.*") for _ in range(20)))
    assert all(len(keys) == 5 for keys in counts)


async def test_a_scan_leaves_no_consumer_behind(bus: Bus) -> None:
    name = await bucket(bus.js)
    kv = await bus.js.key_value(name)
    await kv.put("a.1", b"x")
    async with aclosing(current_entries(bus.js, name, "a.*")) as entries:
        async for _ in entries:
            break  # an early stop cleans up as well
    await current_keys(bus.js, name)
    info = await bus.js.stream_info(f"KV_{name}")
    assert info.state.consumer_count == 0


async def test_a_stream_is_read_whole_in_order_once(bus: Bus) -> None:
    subject = f"evt.demo.pessac.parcel.{uuid.uuid4().hex[:8]}.>"
    for n in range(50):
        await bus.js.publish(subject.replace(">", f"n{n}.parcel.registered"), str(n).encode())

    read = [m.data async for m in stream_messages(bus.js, "DEMO_EVENTS", subject)]

    assert read == [str(n).encode() for n in range(50)]


async def test_a_read_whose_consumer_vanishes_still_yields_everything_once(bus: Bus) -> None:
    # A consumer lives on one server; a rolling restart stops that server mid-read. Deleting
    # the consumer has the same effect on the reader when it lands while messages are still
    # on their way (most runs; a push consumer sometimes delivers everything first): the
    # read then goes on with a new consumer after the last message received.
    subject = f"evt.demo.talence.parcel.{uuid.uuid4().hex[:8]}.>"
    padding = b"." * 8192
    acks = [
        await bus.js.publish_async(
            subject.replace(">", f"n{n}.parcel.registered"), str(n).encode() + padding
        )
        for n in range(4000)
    ]
    await asyncio.gather(*acks)
    read: list[int] = []
    deleted: set[str] = set()
    async with aclosing(stream_messages(bus.js, "DEMO_EVENTS", subject)) as messages:
        async for message in messages:
            read.append(int(message.data.rstrip(b".")))
            if len(read) == 1:
                # The consumer that delivered this message (a listing of the stream's
                # consumers may not show one created a moment ago).
                deleted = {message.metadata.consumer}
                await bus.js.delete_consumer("DEMO_EVENTS", message.metadata.consumer)

    assert deleted, "the reader's consumer was deleted mid-read"
    assert read == list(range(4000))


async def test_a_scan_served_by_a_lagging_replica_still_sees_every_acknowledged_write(
    fresh_cluster: LocalCluster,
) -> None:
    # An R1 read consumer lands on a random replica of the stream. A follower that was frozen
    # while 3000 writes were acknowledged by the other two is still catching up when the scans
    # start: before the fix, scans placed on it saw 0 or a few hundred keys (half the runs).
    nc = await nats.connect(servers=fresh_cluster.client_urls)
    try:
        js = nc.jetstream()
        name = await bucket(js)
        info = await with_replicas(js, f"KV_{name}")
        assert info.cluster is not None
        assert info.cluster.leader
        assert info.cluster.replicas
        follower = fresh_cluster.datacenter_of(info.cluster.replicas[0].name or "")
        leader = await nats.connect(
            servers=fresh_cluster.urls_for(fresh_cluster.datacenter_of(info.cluster.leader))
        )
        try:
            ljs = leader.jetstream()
            fresh_cluster.freeze(follower)
            try:
                acks = [await ljs.publish_async(f"$KV.{name}.k.{n}", b"x") for n in range(3000)]
                # Usually acknowledged at once by the other two; now and then the leader waits
                # for the frozen one, and the writes are acknowledged once it thaws.
                await asyncio.wait(acks, timeout=2)
            finally:
                fresh_cluster.thaw(follower)
            await asyncio.wait_for(asyncio.gather(*acks), 30)
            counts = await asyncio.gather(*(current_keys(ljs, name, "k.*") for _ in range(10)))
        finally:
            await leader.close()
        assert [len(keys) for keys in counts] == [3000] * 10
    finally:
        await nc.close()
