"""Object reads for fixity and downloads: batched direct gets, checked against the object info."""

from __future__ import annotations

import hashlib
import io
import os
import uuid
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import ObjectMeta, ObjectMetaOptions, ObjectStoreConfig

from archive.adapters.content import (
    PUT_CHUNK,
    ContentCorrupted,
    ContentMissing,
    ContentStore,
    fixity_digest,
    iter_object,
    sha256_digest,
)
from mutualis_kernel.bus.objects import FETCH_BATCH, ObjectReader
from mutualis_kernel.runtime.cluster import LocalCluster
from mutualis_kernel.testing.resources import new_object_store, replicas_current

CHUNK_BYTES = 1024
# More chunks than one fetch brings, and a last chunk shorter than the others.
CONTENT = os.urandom(CHUNK_BYTES * (3 * FETCH_BATCH + 5) + 333)


async def _bucket(js: JetStreamContext) -> str:
    bucket = f"reads_{uuid.uuid4().hex[:10]}"
    store = await new_object_store(js, ObjectStoreConfig(bucket=bucket, replicas=3))
    await store.put(
        "doc",
        io.BytesIO(CONTENT),  # type: ignore[arg-type]
        meta=ObjectMeta(name="doc", options=ObjectMetaOptions(max_chunk_size=CHUNK_BYTES)),
    )
    return bucket


async def _connect(cluster: LocalCluster) -> tuple[Client, JetStreamContext]:
    nc = await nats.connect(servers=cluster.client_urls)
    return nc, nc.jetstream()


async def test_an_object_of_many_chunks_reads_back_whole(nats_cluster: LocalCluster) -> None:
    nc, js = await _connect(nats_cluster)
    try:
        bucket = await _bucket(js)
        read = b"".join([chunk async for chunk in iter_object(js, bucket, "doc")])
        assert read == CONTENT
        digest = await sha256_digest(js, bucket, "doc")
        assert (digest.size, digest.sha256) == (len(CONTENT), hashlib.sha256(CONTENT).hexdigest())
        fixity = await fixity_digest(js, bucket, "doc")
        assert fixity.sha512 == hashlib.sha512(CONTENT).hexdigest()
    finally:
        await nc.close()


async def test_an_absent_object_is_missing(nats_cluster: LocalCluster) -> None:
    nc, js = await _connect(nats_cluster)
    try:
        bucket = await _bucket(js)
        with pytest.raises(ContentMissing, match="not in"):
            await sha256_digest(js, bucket, "never-stored")
    finally:
        await nc.close()


async def test_a_lost_chunk_is_corruption_not_a_wait(nats_cluster: LocalCluster) -> None:
    nc, js = await _connect(nats_cluster)
    try:
        bucket = await _bucket(js)
        await js.delete_msg(f"OBJ_{bucket}", 2)  # the second chunk: stream seqs start at 1
        with pytest.raises(ContentCorrupted, match="chunks"):
            await sha256_digest(js, bucket, "doc")
    finally:
        await nc.close()


async def test_a_chunk_rewritten_behind_the_info_fails_its_digest(
    nats_cluster: LocalCluster,
) -> None:
    nc, js = await _connect(nats_cluster)
    try:
        bucket = await _bucket(js)
        reader = await ObjectReader.open(js, bucket, "doc")
        first = await js.get_msg(f"OBJ_{bucket}", 1)
        await js.delete_msg(f"OBJ_{bucket}", 1)
        # Same length, one bit flipped, appended after the others: only the digest can tell.
        flipped = bytes([first.data[0] ^ 1]) + first.data[1:]  # type: ignore[index]
        await js.publish(f"$O.{bucket}.C.{reader.info.nuid}", flipped)
        with pytest.raises(ContentCorrupted, match="digest"):
            await sha256_digest(js, bucket, "doc")
    finally:
        await nc.close()


@pytest.mark.slow
async def test_a_read_survives_its_stream_changing_leader(fresh_cluster: LocalCluster) -> None:
    nc, js = await _connect(fresh_cluster)
    try:
        bucket = await _bucket(js)
        reader = await ObjectReader.open(js, bucket, "doc")
        received: list[bytes] = []
        async for chunk in reader:
            received.append(chunk)
            if len(received) == 1:
                await nc.request(f"$JS.API.STREAM.LEADER.STEPDOWN.OBJ_{bucket}", b"", timeout=10)
        assert b"".join(received) == CONTENT
        assert reader.sha256.hexdigest() == hashlib.sha256(CONTENT).hexdigest()
    finally:
        await nc.close()


@pytest.mark.slow
async def test_a_read_resumes_after_its_last_chunk_when_its_server_dies(
    fresh_cluster: LocalCluster,
) -> None:
    """The server the read's requests go through is killed between two batches: the client
    reconnects to another datacenter and the read goes on from where it was."""
    nc = await nats.connect(
        servers=fresh_cluster.urls_for("dc1") + fresh_cluster.urls_for("dc2"),
        dont_randomize=True,
        reconnect_time_wait=0.1,
    )
    try:
        js = nc.jetstream()
        bucket = await _bucket(js)
        reader = await ObjectReader.open(js, bucket, "doc")
        received: list[bytes] = []
        async for chunk in reader:
            received.append(chunk)
            if len(received) == FETCH_BATCH:  # the first batch is in, the next is not asked yet
                fresh_cluster.kill("dc1")
        assert b"".join(received) == CONTENT  # no chunk twice, none skipped
        assert nc.connected_url is not None
        assert nc.connected_url.port != int(fresh_cluster.urls_for("dc1")[0].rsplit(":", 1)[1])
    finally:
        await nc.close()


async def test_objects_stored_in_large_chunks_and_older_ones_both_audit_and_download(
    nats_cluster: LocalCluster, tmp_path: Path
) -> None:
    """New objects go in 1 MiB chunks, those stored before in nats-py's 128 KiB: both read back
    through the audit and through plain nats-py `get`."""
    nc, js = await _connect(nats_cluster)
    try:
        bucket = f"chunks_{uuid.uuid4().hex[:10]}"
        await new_object_store(js, ObjectStoreConfig(bucket=bucket, replicas=3))
        content = os.urandom(3 * PUT_CHUNK + 12345)
        source = tmp_path / "content.bin"
        source.write_bytes(content)
        store = await js.object_store(bucket)
        await store.put("older", io.BytesIO(content))  # type: ignore[arg-type]
        await ContentStore(js, bucket).put_file("newer", source, "application/octet-stream")

        for name, chunk_size in (("older", 128 * 1024), ("newer", PUT_CHUNK)):
            info = await store.get_info(name)
            assert info.options is not None
            assert info.options.max_chunk_size == chunk_size
            assert info.chunks == -(-len(content) // chunk_size)
            digest = await sha256_digest(js, bucket, name)
            assert digest.sha256 == hashlib.sha256(content).hexdigest()
            await replicas_current(js, f"OBJ_{bucket}")  # nats-py reads any replica
            with (tmp_path / f"{name}.out").open("wb") as target:
                await store.get(name, writeinto=target)  # type: ignore[arg-type]
            assert (tmp_path / f"{name}.out").read_bytes() == content
    finally:
        await nc.close()
