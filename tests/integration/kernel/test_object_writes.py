"""Object writes through the kernel's `put_object`: the Object Store's own layout, chunks in
flight at once, an object replaced whole."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import nats
import pytest
from nats.js import JetStreamContext
from nats.js.api import ObjectInfo, ObjectStoreConfig
from nats.js.object_store import ObjectStore

from mutualis_kernel.bus.objects import ObjectReader, put_object
from mutualis_kernel.bus.publisher import with_attempt_limits
from mutualis_kernel.runtime import LocalCluster
from mutualis_kernel.testing.resources import new_object_store, replicas_current

CONTENT = os.urandom(2 * 1024 * 1024 + 12345)  # 9 chunks of 256 KiB: two windows of 8, plus one


@dataclass
class Bucket:
    js: JetStreamContext
    store: ObjectStore
    name: str

    async def put(self, path: Path, **options: str) -> ObjectInfo:
        """As the services put (archive, parapheur): an attempt that fails transiently is
        made again whole. A new stream's first chunks once met "no responders" in CI: the
        leader's interest in the chunk subjects had not yet reached the server this client
        is connected to, though the stream's leader and followers were all current."""

        async def attempt(limit_s: float) -> ObjectInfo:
            with path.open("rb") as source:
                return await put_object(
                    self.js,
                    self.name,
                    "doc",
                    source,
                    chunk_size=256 * 1024,
                    timeout_s=limit_s,
                    **options,
                )

        return await with_attempt_limits(attempt, 30.0, "test object")


@pytest.fixture
async def bucket(nats_cluster: LocalCluster) -> AsyncIterator[Bucket]:
    nc = await nats.connect(servers=nats_cluster.client_urls)
    try:
        js = nc.jetstream()
        name = f"put_{uuid.uuid4().hex[:8]}"
        # Waits for the new stream's leader and followers.
        store = await new_object_store(js, ObjectStoreConfig(bucket=name, replicas=3))
        yield Bucket(js, store, name)
    finally:
        await nc.close()


async def test_a_file_put_with_chunks_in_flight_reads_back_whole_with_nats_py(
    bucket: Bucket, tmp_path: Path
) -> None:
    source = tmp_path / "arrete.pdf"
    source.write_bytes(CONTENT)

    written = await bucket.put(source, description="application/pdf")

    assert (written.size, written.chunks) == (len(CONTENT), 9)
    # Another client's view: nats-py's own get checks its digest and chunk count.
    await replicas_current(bucket.js, f"OBJ_{bucket.name}")  # nats-py reads any replica
    found = await bucket.store.get("doc")
    assert found.data == CONTENT
    assert found.info.description == "application/pdf"
    assert found.info.digest == written.digest
    reader = await ObjectReader.open(bucket.js, bucket.name, "doc")
    assert hashlib.sha256(b"".join([c async for c in reader])).digest() == (
        hashlib.sha256(CONTENT).digest()
    )


async def test_putting_a_name_again_replaces_the_object_and_purges_its_old_chunks(
    bucket: Bucket, tmp_path: Path
) -> None:
    first, second = tmp_path / "v1", tmp_path / "v2"
    first.write_bytes(CONTENT)
    second.write_bytes(CONTENT[::-1][:700_000])
    old = await bucket.put(first)

    new = await bucket.put(second)

    await replicas_current(bucket.js, f"OBJ_{bucket.name}")  # nats-py reads any replica
    assert (await bucket.store.get("doc")).data == second.read_bytes()
    chunks = f"$O.{bucket.name}.C.>"
    info = await bucket.js.stream_info(f"OBJ_{bucket.name}", subjects_filter=chunks)
    assert info.state.subjects == {f"$O.{bucket.name}.C.{new.nuid}": new.chunks}
    assert old.nuid != new.nuid
