"""The background fixity audit, as the service runs it (`wire`'s `auditing` loop): it reads
objects no faster than MUTUALIS_FIXITY_RATE_BYTES_S, and a tampered object makes it publish
`archive.integrity.failed` on ARCHIVE_EVENTS, which the notifications service alerts on.

The rate is shown without timing anything: after each object the loop rests size / rate
seconds, waiting on the stop event. With a rate of 1 byte/s that rest outlasts the test, so
the loop checks exactly one object and then, asked to stop, returns at once without touching
the next one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from archive.domain.events import IntegrityFailed, IntegrityVerified
from archive.manifest import CONTENT, EVENTS_STREAM
from integration.archive.conftest import ArchiveEnv, running_archive
from mutualis_kernel.bus.kv import stream_messages
from mutualis_kernel.events import Envelope
from mutualis_kernel.events.envelope import decode
from mutualis_kernel.runner import BackgroundLoop
from mutualis_kernel.runtime.cluster import LocalCluster
from mutualis_trust.pki import DevPki

DOCUMENT = b"%PDF-1.4\n% audited\n" + b"a" * 5000 + b"\n%%EOF\n"
INTEGRITY = "evt.archive.*.audit.*.integrity.*"


async def _ingest(archive: ArchiveEnv, tenant: str, keys: list[str]) -> list[dict[str, Any]]:
    records = []
    for key in keys:
        response = await archive.ingest(tenant, DOCUMENT + key.encode(), key=key)
        assert response.status_code == 201, response.text
        records.append(response.json())
    return records


async def _last_event_seq(archive: ArchiveEnv) -> int:
    return (await archive.platform.js.stream_info(EVENTS_STREAM)).state.last_seq


async def _integrity_events(archive: ArchiveEnv, after_seq: int) -> list[Envelope[Any]]:
    """The integrity results stored on ARCHIVE_EVENTS after `after_seq`, decoded."""
    found = []
    async for message in stream_messages(archive.platform.js, EVENTS_STREAM, INTEGRITY):
        seq = message.metadata.sequence.stream
        if seq > after_seq:
            found.append(
                decode(message.subject, message.headers, message.data, stream_sequence=seq)
            )
    return found


async def _until(
    probe: Callable[[], Awaitable[list[Envelope[Any]]]],
    done: Callable[[list[Envelope[Any]]], bool],
    deadline_s: float = 60.0,
) -> list[Envelope[Any]]:
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    while True:
        found = await probe()
        if done(found):
            return found
        assert loop.time() < end, f"gave up after {deadline_s} s; saw {found}"
        await asyncio.sleep(0.1)


def _auditing(archive: ArchiveEnv) -> BackgroundLoop:
    [loop] = [b for b in archive.wiring.background if b.__name__ == "auditing"]
    return loop


async def test_the_audit_rests_each_objects_size_over_the_rate_and_stops_when_asked(
    nats_cluster: LocalCluster, pki: DevPki, tmp_path: Path
) -> None:
    async with running_archive(nats_cluster, pki, tmp_path, fixity_rate_bytes_s=1) as archive:
        await _ingest(archive, "bruges", ["slow-1", "slow-2", "slow-3"])
        start = await _last_event_seq(archive)
        stop = asyncio.Event()
        task = asyncio.create_task(_auditing(archive)(stop))
        try:
            first = await _until(lambda: _integrity_events(archive, start), bool)
            # ~5 KB at 1 byte/s: the loop now rests for over an hour before the next object.
            # What the absence of a second result within this much time shows: a loop that
            # did not rest would have checked the other objects in milliseconds.
            await asyncio.sleep(2.0)
            assert len(await _integrity_events(archive, start)) == 1
        finally:
            stop.set()
            # A SIGTERM ends the rest at once: the service does not hang in its pause.
            await asyncio.wait_for(task, timeout=10)
        assert isinstance(first[0].data, IntegrityVerified)
        assert len(await _integrity_events(archive, start)) == 1


async def test_a_tampered_object_makes_the_audit_publish_integrity_failed(
    nats_cluster: LocalCluster, pki: DevPki, tmp_path: Path
) -> None:
    tenant = "floirac"
    rate = 1024**3  # fast enough that the whole pass runs within the test
    async with running_archive(nats_cluster, pki, tmp_path, fixity_rate_bytes_s=rate) as archive:
        intact, damaged, other = await _ingest(archive, tenant, ["kept-1", "damaged", "kept-2"])
        name = damaged["content"]["object_name"]
        store = await archive.platform.js.object_store(CONTENT)
        flipped = bytearray(DOCUMENT + b"damaged")
        flipped[200] ^= 0x01
        await store.put(name, bytes(flipped))  # what a disk fault or an intruder would leave
        start = await _last_event_seq(archive)
        ours = {r["record_id"] for r in (intact, damaged, other)}

        def every_record_checked(events: list[Envelope[Any]]) -> bool:
            return {e.data.record_id for e in events if e.tenant == tenant} >= ours

        stop = asyncio.Event()
        task = asyncio.create_task(_auditing(archive)(stop))
        try:
            events = await _until(lambda: _integrity_events(archive, start), every_record_checked)
        finally:
            stop.set()
            await asyncio.wait_for(task, timeout=10)

        results = {e.data.record_id: e for e in events if e.tenant == tenant}
        failed = results[damaged["record_id"]]
        assert isinstance(failed.data, IntegrityFailed)
        assert failed.type == "mutualis.archive.integrity.failed.v1"
        assert failed.data.kind == "object"
        assert failed.data.reference == name
        assert damaged["content"]["sha256"] in failed.data.reason
        for record in (intact, other):
            verified = results[record["record_id"]]
            assert isinstance(verified.data, IntegrityVerified)
            assert verified.data.sha256 == record["content"]["sha256"]
        # Each result is journaled too, so the journal's seal covers the audit itself.
        fixity = [
            e
            async for e in archive.service.journal.entries(tenant)
            if e.operation == "fixity" and e.record_id == damaged["record_id"]
        ]
        assert [e.details["ok"] for e in fixity] == [False]
