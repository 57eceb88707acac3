"""Object reads through the kernel's `ObjectReader`: a replica catching up is not corruption."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import uuid

import nats
from nats.js.api import ObjectMeta, ObjectMetaOptions, ObjectStoreConfig

from mutualis_kernel.bus.objects import ObjectReader
from mutualis_kernel.runtime import LocalCluster
from mutualis_kernel.testing.resources import new_object_store, with_replicas

CONTENT = os.urandom(3000 * 1024 + 77)


async def read_whole(js: nats.js.JetStreamContext, bucket: str) -> bytes:
    reader = await ObjectReader.open(js, bucket, "doc")
    return b"".join([chunk async for chunk in reader])


async def test_an_object_read_from_a_lagging_replica_is_whole_not_corrupted(
    fresh_cluster: LocalCluster,
) -> None:
    # A read may be answered by any replica. One frozen while the object was stored is still
    # catching up when the reads start: before the fix, a read placed there counted fewer
    # chunks than the object's info and reported the object as corrupted.
    nc = await nats.connect(servers=fresh_cluster.client_urls)
    try:
        js = nc.jetstream()
        bucket = f"lag_{uuid.uuid4().hex[:8]}"
        await new_object_store(js, ObjectStoreConfig(bucket=bucket, replicas=3))
        info = await with_replicas(js, f"OBJ_{bucket}")
        assert info.cluster is not None
        assert info.cluster.leader
        assert info.cluster.replicas
        follower = fresh_cluster.datacenter_of(info.cluster.replicas[0].name or "")
        leader = await nats.connect(
            servers=fresh_cluster.urls_for(fresh_cluster.datacenter_of(info.cluster.leader))
        )
        try:
            ljs = leader.jetstream()
            store = await ljs.object_store(bucket)
            fresh_cluster.freeze(follower)
            try:
                put = asyncio.ensure_future(
                    store.put(
                        "doc",
                        io.BytesIO(CONTENT),  # type: ignore[arg-type]
                        meta=ObjectMeta(name="doc", options=ObjectMetaOptions(max_chunk_size=1024)),
                    )
                )
                # Usually stored at once by the other two replicas; now and then the leader
                # waits for the frozen one, and the put completes once it thaws.
                await asyncio.wait([put], timeout=3)
            finally:
                fresh_cluster.thaw(follower)
            await asyncio.wait_for(put, 30)
            # Direct gets are answered by the replica nearest the client: read through the
            # follower's own server too, where the read meets the lag first.
            lagging = await nats.connect(servers=fresh_cluster.urls_for(follower))
            try:
                fjs = lagging.jetstream()
                reads = await asyncio.gather(*(read_whole(js_, bucket) for js_ in [ljs, fjs] * 5))
            finally:
                await lagging.close()
        finally:
            await leader.close()
        digest = hashlib.sha256(CONTENT).hexdigest()
        assert [hashlib.sha256(read).hexdigest() for read in reads] == [digest] * 10
    finally:
        await nc.close()
