"""Object writes through the kernel's `put_file`: the Object Store's own layout, chunks in
flight at once, an object replaced whole."""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

import nats
from nats.js.api import ObjectStoreConfig

from mutualis_kernel.bus.objects import ObjectReader, put_file
from mutualis_kernel.runtime import LocalCluster

CONTENT = os.urandom(2 * 1024 * 1024 + 12345)  # 9 chunks of 256 KiB: two windows of 8, plus one


async def test_a_file_put_with_chunks_in_flight_reads_back_whole_with_nats_py(
    nats_cluster: LocalCluster, tmp_path: Path
) -> None:
    source = tmp_path / "arrete.pdf"
    source.write_bytes(CONTENT)
    nc = await nats.connect(servers=nats_cluster.client_urls)
    try:
        js = nc.jetstream()
        bucket = f"put_{uuid.uuid4().hex[:8]}"
        store = await js.create_object_store(
            bucket=bucket, config=ObjectStoreConfig(bucket=bucket, replicas=3)
        )

        written = await put_file(
            js, bucket, "doc", source, description="application/pdf", chunk_size=256 * 1024
        )

        assert (written.size, written.chunks) == (len(CONTENT), 9)
        # Another client's view: nats-py's own get checks its digest and chunk count.
        found = await store.get("doc")
        assert found.data == CONTENT
        assert found.info.description == "application/pdf"
        assert found.info.digest == written.digest
        reader = await ObjectReader.open(js, bucket, "doc")
        assert hashlib.sha256(b"".join([c async for c in reader])).digest() == (
            hashlib.sha256(CONTENT).digest()
        )
    finally:
        await nc.close()


async def test_putting_a_name_again_replaces_the_object_and_purges_its_old_chunks(
    nats_cluster: LocalCluster, tmp_path: Path
) -> None:
    first, second = tmp_path / "v1", tmp_path / "v2"
    first.write_bytes(CONTENT)
    second.write_bytes(CONTENT[::-1][:700_000])
    nc = await nats.connect(servers=nats_cluster.client_urls)
    try:
        js = nc.jetstream()
        bucket = f"put_{uuid.uuid4().hex[:8]}"
        store = await js.create_object_store(
            bucket=bucket, config=ObjectStoreConfig(bucket=bucket, replicas=3)
        )
        old = await put_file(js, bucket, "doc", first, chunk_size=256 * 1024)

        new = await put_file(js, bucket, "doc", second, chunk_size=256 * 1024)

        assert (await store.get("doc")).data == second.read_bytes()
        info = await js.stream_info(f"OBJ_{bucket}", subjects_filter=f"$O.{bucket}.C.>")
        assert info.state.subjects == {f"$O.{bucket}.C.{new.nuid}": new.chunks}
        assert old.nuid != new.nuid
    finally:
        await nc.close()
