"""Streams and buckets a test makes for itself, made as patiently as the services make theirs.

On a loaded two-core machine the meta leader now and then sees a node miss a heartbeat and
refuses a placement for a moment ("no suitable peers"), and a new stream's followers come up
some milliseconds after its leader. A test about reads or writes should not fail on either.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, ObjectStoreConfig, StreamInfo
from nats.js.kv import KeyValue
from nats.js.object_store import ObjectStore

from mutualis_kernel.streams import until_settled


async def _stream_info_once(
    js: JetStreamContext, stream: str, ready: Callable[[StreamInfo], bool], what: str
) -> StreamInfo:
    """The stream's info once `ready` says so, asked every 50 ms for up to about 20 s."""
    for _ in range(400):
        info = await until_settled(lambda: js.stream_info(stream), patience_s=10)
        if ready(info):
            return info
        await asyncio.sleep(0.05)
    raise AssertionError(f"{stream} never {what}")


async def with_replicas(js: JetStreamContext, stream: str, followers: int = 2) -> StreamInfo:
    """The stream's info once its leader and `followers` followers are known."""
    return await _stream_info_once(
        js,
        stream,
        lambda info: bool(
            info.cluster and info.cluster.leader and len(info.cluster.replicas or ()) >= followers
        ),
        f"had a leader and {followers} followers",
    )


async def new_object_store(js: JetStreamContext, config: ObjectStoreConfig) -> ObjectStore:
    """Create an object store and wait for all its stream's replicas."""
    bucket = config.bucket
    assert bucket is not None
    store = await until_settled(
        lambda: js.create_object_store(bucket=bucket, config=config), patience_s=30
    )
    await with_replicas(js, f"OBJ_{bucket}", (config.replicas or 1) - 1)
    return store


async def new_key_value(js: JetStreamContext, config: KeyValueConfig) -> KeyValue:
    """Create a key-value bucket and wait for all its stream's replicas."""
    kv = await until_settled(lambda: js.create_key_value(config), patience_s=30)
    await with_replicas(js, f"KV_{config.bucket}", (config.replicas or 1) - 1)
    return kv


async def replicas_current(js: JetStreamContext, stream: str) -> StreamInfo:
    """The stream's info once every follower holds all the leader has.

    Before reading back through plain nats-py: its reads take the word of whichever replica
    serves them, and one still applying the last writes hands back a short object (a digest
    mismatch, CI on a loaded machine). The kernel's own reads check and wait instead."""
    return await _stream_info_once(
        js,
        stream,
        lambda info: bool(
            info.cluster
            and info.cluster.leader
            and all(r.current and not r.lag for r in info.cluster.replicas or [])
        ),
        "had every replica caught up with its leader",
    )
