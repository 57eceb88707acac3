"""A completed parapheur folder is archived once, however often its event is delivered."""

from __future__ import annotations

import asyncio
import hashlib
import io
from datetime import UTC, datetime

from nats.js.api import ObjectMeta

from archive.bootstrap import consumers
from archive.manifest import PARAPHEUR_DOCUMENTS
from archive.service_layer.handlers import parapheur_record_id
from integration.archive.conftest import ArchiveEnv
from mutualis_kernel.streams import (
    ObjectStoreSpec,
    Resources,
    apply_resources_patiently,
    events_stream,
)
from parapheur.domain.events import DocumentRef, FolderCompleted

SIGNED = b"%PDF-1.7\n% signed by the mayor\n" + b"s" * 20000 + b"\n%%EOF\n"


async def test_a_redelivered_folder_completed_makes_one_record(archive: ArchiveEnv) -> None:
    js = archive.platform.js
    await apply_resources_patiently(
        js,
        Resources(
            streams=(events_stream("parapheur", "parapheur events"),),
            object_stores=(ObjectStoreSpec(PARAPHEUR_DOCUMENTS, "parapheur documents"),),
        ),
        3,
    )
    store = await js.object_store(PARAPHEUR_DOCUMENTS)
    await store.put(
        "bordeaux/folder-77/final.pdf",
        io.BytesIO(SIGNED),
        meta=ObjectMeta(name="bordeaux/folder-77/final.pdf"),
    )  # type: ignore[arg-type]
    event = FolderCompleted(
        folder_id="folder-77",
        title="Arrêté de voirie 2024-77",
        circuit_id="c1",
        circuit_name="Arrêtés",
        document=DocumentRef(
            object_name="bordeaux/folder-77/final.pdf",
            filename="arrete-77.pdf",
            sha256=hashlib.sha256(SIGNED).hexdigest(),
            size=len(SIGNED),
        ),
        submitted_by="agent-1",
        completed_at=datetime.now(UTC),
    )
    from mutualis_kernel.bus.publisher import EventPublisher

    parapheur = EventPublisher(js, source_service="parapheur")
    await parapheur.publish(event, tenant="bordeaux", aggregate_id="folder-77")
    # The same fact published again (a producer retry with a new event id).
    await parapheur.publish(event, tenant="bordeaux", aggregate_id="folder-77")

    stop = asyncio.Event()
    workers = consumers(archive.service, archive.platform)
    tasks = [asyncio.create_task(w.run(stop)) for w in workers]
    record_id = parapheur_record_id("bordeaux", "folder-77")
    try:
        for _ in range(200):
            record, _version = await archive.service.records.load("bordeaux", record_id)
            if record is not None:
                break
            await asyncio.sleep(0.1)
        assert record is not None
        assert record.content.sha256 == hashlib.sha256(SIGNED).hexdigest()
        assert record.source == "parapheur"
        await asyncio.sleep(1.0)  # let the second delivery be handled too
        history = await archive.platform.store.load("archive", "bordeaux", "record", record_id)
        assert len(history.events) == 1
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
