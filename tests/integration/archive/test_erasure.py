"""The reaction to identity's `user.erased` (docs/archive.md, "Erasure requests"): archived
records are exempt from erasure, so the archive deletes nothing and journals one
`erasure.exempted` entry that holds the opaque user id and the legal basis, nothing more."""

from __future__ import annotations

import asyncio
import json

from nats.js.errors import NotFoundError

from archive.manifest import CONSUMERS
from identity.domain.events import UserErased
from integration.archive.conftest import ArchiveEnv, sample_metadata
from mutualis_kernel.bus.publisher import EventPublisher
from mutualis_kernel.streams import Resources, apply_resources_patiently, events_stream

DOCUMENT = b"%PDF-1.4\n% signed by the erased agent\n" + b"e" * 3000 + b"\n%%EOF\n"


async def test_an_erased_user_s_records_stay_and_the_exemption_is_journaled_once(
    archive: ArchiveEnv,
) -> None:
    tenant, user = "le-haillan", "3f0c9a52-erased-agent"
    js = archive.platform.js
    await apply_resources_patiently(
        js, Resources(streams=(events_stream("identity", "identity events"),)), 3
    )
    response = await archive.http.post(
        f"/v1/archive/{tenant}/records",
        headers=archive.issuer.bearer(user, tenant, roles=("agent",)),
        data={
            "metadata": json.dumps(sample_metadata(title="Arrêté signé par l'agent")),
            "idempotency_key": "by-the-erased-agent",
        },
        files={"file": ("arrete.pdf", DOCUMENT, "application/pdf")},
    )
    assert response.status_code == 201, response.text
    record = response.json()
    assert record["ingested_by"] == user

    identity = EventPublisher(js, source_service="identity")
    erased = UserErased(user_id=user, tenant=tenant, kind="agent")
    await identity.publish(erased, tenant=tenant, aggregate_id=user)
    # The same fact again (identity retrying with a new event id): still one journal entry.
    await identity.publish(erased, tenant=tenant, aggregate_id=user)

    [spec] = [s for s in CONSUMERS if s.stream == "IDENTITY_EVENTS"]
    [consumer] = [c for c in archive.wiring.consumers if c.spec.durable == spec.durable]
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        await _until_handled(archive, spec.stream, spec.durable, expected=2)
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=10)

    exemptions = [
        e
        async for e in archive.service.journal.entries(tenant)
        if e.operation == "erasure.exempted"
    ]
    assert len(exemptions) == 1
    [entry] = exemptions
    assert entry.details["user_id"] == user
    assert "17(3)" in entry.details["basis"]
    assert set(entry.details) == {"user_id", "basis"}  # no name, no e-mail: the id alone
    assert entry.record_id is None

    # Nothing was deleted or rewritten: the record, its content and the chain are as before.
    headers = archive.headers(tenant, ("archivist",))
    kept = await archive.http.get(
        f"/v1/archive/{tenant}/records/{record['record_id']}", headers=headers
    )
    assert kept.status_code == 200
    assert kept.json()["status"] == "active"
    assert kept.json()["ingested_by"] == user
    content = await archive.http.get(
        f"/v1/archive/{tenant}/records/{record['record_id']}/content", headers=headers
    )
    assert content.content == DOCUMENT
    assert (await archive.service.verify(tenant)).ok


async def _until_handled(
    archive: ArchiveEnv, stream: str, durable: str, expected: int, deadline_s: float = 30.0
) -> None:
    """Until the durable consumer has acknowledged `expected` messages and holds none back."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    while True:
        try:
            info = await archive.platform.js.consumer_info(stream, durable)
        except NotFoundError:
            info = None  # the consumer creates its durable when it starts
        if info is None:
            assert loop.time() < end, f"{durable} was never created"
            await asyncio.sleep(0.1)
            continue
        acked = info.ack_floor.stream_seq if info.ack_floor else 0
        if acked and info.num_pending == 0 and info.num_ack_pending == 0:
            delivered = info.delivered.consumer_seq if info.delivered else 0
            if delivered >= expected:
                return
        assert loop.time() < end, f"{durable} did not handle {expected} messages: {info}"
        await asyncio.sleep(0.1)
