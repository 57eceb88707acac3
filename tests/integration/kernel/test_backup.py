"""Backups of a whole cluster, restored into a fresh one: every record comes back as it was.

A three-datacenter cluster is filled the way the services fill it (an events stream with
headers, a KV bucket with history, an object store holding a document, a durable consumer
part-way through its work), backed up with JetStream snapshots, and restored into a second
cluster started empty, as after a disaster that took more than one datacenter.
"""

import asyncio
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import nats.errors
import pytest
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, KeyValueConfig, ObjectStoreConfig, RawStreamMsg

from mutualis_kernel.backup import (
    DATA_FILE,
    MANIFEST_FILE,
    BackupCorrupted,
    StreamsExist,
    backup_all,
    read_manifest,
    restore_all,
    stream_names,
)
from mutualis_kernel.bus.kv import PatientKeyValue
from mutualis_kernel.testing.demo_events import ParcelRegistered, ParcelShipped
from mutualis_kernel.testing.fixtures import ClusterFactory
from mutualis_kernel.testing.resources import new_key_value, new_object_store

from .conftest import Bus, open_bus

STREAM = "DEMO_EVENTS"
BUCKET = "backup_settings"
OBJECTS = "backup_documents"
DOCUMENT = "folder-42/contract.pdf"
DURABLE = "backup-reader"
ACKED = 7


@dataclass
class Filled:
    """What was written before the backup, to be found again after the restore."""

    messages: list[RawStreamMsg]
    history: dict[str, object]
    document_sha256: str
    ack_floor: int


async def fill(bus: Bus, document: Path) -> Filled:
    js = bus.js
    for n in range(40):
        event = (
            ParcelRegistered(reference=f"P{n}", weight_kg=n / 10)
            if n % 4
            else ParcelShipped(carrier="La Poste")
        )
        await bus.publisher.publish(event, tenant="bordeaux", aggregate_id=f"parcel-{n % 10}")

    # A bucket just created may answer its first writes only once its stream has a leader
    # (CI: "no responders"); writes ride that out as the services' do.
    kv = PatientKeyValue(
        await new_key_value(js, KeyValueConfig(bucket=BUCKET, history=5, replicas=3))
    )
    for revision in range(3):
        await kv.put("tenant.bordeaux.theme", f"blue-{revision}".encode())
    await kv.put("tenant.lyon.theme", b"green")
    await kv.put("tenant.nantes.theme", b"red")
    await kv.delete("tenant.nantes.theme")

    store = await new_object_store(js, ObjectStoreConfig(bucket=OBJECTS, replicas=3))
    with document.open("rb") as file:
        await store.put(DOCUMENT, file)

    reader = await js.pull_subscribe(
        "evt.demo.>", durable=DURABLE, stream=STREAM, config=ConsumerConfig(ack_wait=60)
    )
    received = 0
    while received < ACKED + 3:
        for message in await fetch_patiently(reader, ACKED + 3 - received):
            received += 1
            if message.metadata.sequence.stream <= ACKED:
                await message.ack_sync()
    consumer = await js.consumer_info(STREAM, DURABLE)

    return Filled(
        messages=await read_stream(js),
        history=await kv_history(js),
        document_sha256=sha256_of(document),
        ack_floor=consumer.ack_floor.stream_seq if consumer.ack_floor else 0,
    )


async def fetch_patiently(subscription: JetStreamContext.PullSubscription, batch: int) -> list[Msg]:
    """At least one message, waiting up to 60 s.

    A durable consumer just created (or just restored) answers its first pull once its
    replicas have elected a leader, which a loaded CI machine can take longer than one
    fetch's few seconds to do.
    """
    async with asyncio.timeout(60):
        while True:
            try:
                return await subscription.fetch(batch, timeout=5)
            except nats.errors.TimeoutError:
                continue


async def read_stream(js: JetStreamContext) -> list[RawStreamMsg]:
    info = await js.stream_info(STREAM)
    return [
        await js.get_msg(STREAM, seq)
        for seq in range(info.state.first_seq, info.state.last_seq + 1)
    ]


async def kv_history(js: JetStreamContext) -> dict[str, object]:
    """Every revision of every key (deletes included), and the current values.

    Read message by message: nats-py's `kv.history()` can miss entries the server already
    pushed when it asks for the pending count, which would make this test flaky.
    """
    info = await js.stream_info(f"KV_{BUCKET}")
    revisions = [
        await js.get_msg(f"KV_{BUCKET}", seq)
        for seq in range(info.state.first_seq, info.state.last_seq + 1)
    ]
    kv = await js.key_value(BUCKET)
    current = {}
    for key in ("tenant.bordeaux.theme", "tenant.lyon.theme"):
        entry = await kv.get(key)
        current[key] = (entry.revision, entry.value)
    return {
        "revisions": [(m.seq, m.subject, m.headers, m.data) for m in revisions],
        "current": current,
    }


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def a_document(tmp_path: Path) -> Path:
    path = tmp_path / "contract.pdf"
    path.write_bytes(os.urandom(3 * 1024 * 1024 + 123))
    return path


async def test_a_fresh_cluster_restored_from_a_backup_holds_every_record(
    cluster_factory: ClusterFactory, tmp_path: Path
) -> None:
    original = await open_bus(cluster_factory())
    try:
        filled = await fill(original, a_document(tmp_path))
        report = await backup_all(original.js, tmp_path / "backup")
    finally:
        await original.nc.close()
    backed_up = {s.name: s for s in report.streams}
    assert {STREAM, f"KV_{BUCKET}", f"OBJ_{OBJECTS}"} <= set(backed_up)
    assert backed_up[f"KV_{BUCKET}"].kind == "kv"
    assert backed_up[f"OBJ_{OBJECTS}"].kind == "object_store"
    assert backed_up[STREAM].messages == len(filled.messages)

    # A disaster took every datacenter: a new, empty cluster is all there is.
    restored = await open_bus(cluster_factory())
    try:
        for name in await stream_names(restored.js):
            await restored.js.delete_stream(name)
        result = await restore_all(restored.js, tmp_path / "backup")
        assert result.complete
        assert {s.name for s in result.streams} == set(backed_up)
        assert all(s.replicas == 3 for s in result.streams)

        messages = await read_stream(restored.js)
        assert [(m.seq, m.subject, m.headers, m.data) for m in messages] == [
            (m.seq, m.subject, m.headers, m.data) for m in filled.messages
        ]
        assert await kv_history(restored.js) == filled.history

        store = await restored.js.object_store(OBJECTS)
        copy = tmp_path / "restored.pdf"
        with copy.open("wb") as file:
            await store.get(DOCUMENT, writeinto=file)
        assert sha256_of(copy) == filled.document_sha256

        consumer = await restored.js.consumer_info(STREAM, DURABLE)
        assert consumer.ack_floor is not None
        assert consumer.ack_floor.stream_seq == filled.ack_floor
        assert filled.ack_floor == ACKED
        # Delivered but unacknowledged at the backup's moment: handed out again, not lost.
        resumed = await restored.js.pull_subscribe("evt.demo.>", durable=DURABLE, stream=STREAM)
        (first,) = await fetch_patiently(resumed, 1)
        assert first.metadata.sequence.stream == ACKED + 1
    finally:
        await restored.nc.close()


async def test_a_damaged_backup_is_refused_before_anything_is_restored(
    cluster_factory: ClusterFactory, tmp_path: Path
) -> None:
    bus = await open_bus(cluster_factory())
    try:
        await bus.publisher.publish(
            ParcelRegistered(reference="P1", weight_kg=1.0), tenant="bordeaux", aggregate_id="p1"
        )
        await backup_all(bus.js, tmp_path / "backup", streams=[STREAM])
        damaged = tmp_path / "backup" / STREAM / DATA_FILE
        content = bytearray(damaged.read_bytes())
        content[len(content) // 2] ^= 0xFF
        damaged.write_bytes(bytes(content))

        with pytest.raises(BackupCorrupted, match=str(damaged)):
            await restore_all(bus.js, tmp_path / "backup", replace=True)
        # Refused before starting: the stream is still there, untouched.
        assert (await bus.js.stream_info(STREAM)).state.messages == 1
    finally:
        await bus.nc.close()


async def test_a_backup_that_never_finished_is_refused(tmp_path: Path) -> None:
    (tmp_path / "backup" / STREAM).mkdir(parents=True)
    with pytest.raises(BackupCorrupted, match=MANIFEST_FILE):
        read_manifest(tmp_path / "backup")


async def test_restoring_over_existing_streams_needs_replace(
    cluster_factory: ClusterFactory, tmp_path: Path
) -> None:
    bus = await open_bus(cluster_factory())
    try:
        for n in range(3):
            await bus.publisher.publish(
                ParcelRegistered(reference=f"P{n}", weight_kg=1.0),
                tenant="bordeaux",
                aggregate_id=f"p{n}",
            )
        await backup_all(bus.js, tmp_path / "backup", streams=[STREAM])
        await bus.publisher.publish(
            ParcelRegistered(reference="after", weight_kg=1.0), tenant="bordeaux", aggregate_id="x"
        )

        with pytest.raises(StreamsExist, match=STREAM):
            await restore_all(bus.js, tmp_path / "backup")
        assert (await bus.js.stream_info(STREAM)).state.messages == 4

        report = await restore_all(bus.js, tmp_path / "backup", replace=True)
        assert report.streams[0].replaced
        # Back to the backup's moment: what came after it is gone, as asked.
        assert (await bus.js.stream_info(STREAM)).state.messages == 3
    finally:
        await bus.nc.close()
