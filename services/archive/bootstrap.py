"""The composition root: the service, its adapters, the API, the consumers and the loops."""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from archive.adapters.content import ContentStore, stage_object
from archive.adapters.journal import JetStreamJournal
from archive.adapters.records import RecordRepository
from archive.adapters.seda import SedaPackages
from archive.adapters.seda_schemas import SedaSchemasMissing, default_schema_dir, schema_dir
from archive.adapters.timestamper import RemoteTsa
from archive.domain import errors
from archive.domain.commands import SYSTEM, Ingest
from archive.domain.model import RecordMetadata, RetentionRule
from archive.entrypoints.api import archive_router
from archive.manifest import CONSUMERS, CONTENT, EVENTS_STREAM, JOURNAL_STREAM, PARAPHEUR_DOCUMENTS
from archive.service_layer.handlers import METRICS, ArchiveService
from archive.service_layer.ports import Timestamper, TimestampRefused
from archive.settings import ArchiveSettings
from mutualis_kernel.auth import TokenVerifier
from mutualis_kernel.bus.consumer import EventConsumer
from mutualis_kernel.bus.errors import Unprocessable
from mutualis_kernel.events import Envelope
from mutualis_kernel.health import nats_readiness
from mutualis_kernel.http import create_app
from mutualis_kernel.runner import Platform, Wiring

log = structlog.get_logger("archive")


def build_service(
    platform: Platform, settings: ArchiveSettings, timestamper: Timestamper | None = None
) -> ArchiveService:
    if settings.work_dir is not None:
        settings.work_dir.mkdir(parents=True, exist_ok=True)
    return ArchiveService(
        publisher=platform.publisher,
        records=RecordRepository(platform.js, platform.store),
        content=ContentStore(platform.js, CONTENT),
        journal=JetStreamJournal(platform.js),
        timestamper=timestamper
        or RemoteTsa(
            settings.tsa_url, settings.tsa_ca_file, settings.tsa_chain_file, metrics=METRICS
        ),
        work_dir=settings.work_dir,
    )


def parapheur_handler(service: ArchiveService, platform: Platform) -> object:
    from parapheur.domain.events import FolderCompleted

    async def on_folder_completed(envelope: Envelope[FolderCompleted]) -> None:
        event = envelope.data
        today = event.completed_at.date()
        metadata = RecordMetadata(
            title=event.title,
            originating_service="parapheur",
            document_type=event.metadata.get("document_type", "signed-document"),
            document_date=today,
            retention=RetentionRule(
                duration=event.metadata.get("retention", "P10Y"),
                final_action=event.metadata.get("final_action", "keep"),  # type: ignore[arg-type]
                start_date=today,
            ),
            communicability_delay=event.metadata.get("communicability_delay", "P0D"),
            keywords=tuple(k for k in event.metadata.get("keywords", "").split(",") if k),
            description=f"Circuit {event.circuit_name}; {len(event.signatures)} signature(s)",
        )
        staged = await stage_object(
            platform.js, PARAPHEUR_DOCUMENTS, event.document.object_name, service.work_dir
        )
        try:
            await service.ingest(
                Ingest(
                    tenant=envelope.tenant,
                    metadata=metadata,
                    filename=event.document.filename,
                    source="parapheur",
                    cause=event.folder_id,
                    by=SYSTEM,
                    declared_sha256=event.document.sha256,
                ),
                staged,
            )
        except errors.HashMismatch as error:
            raise Unprocessable(str(error)) from None
        finally:
            staged.discard()

    return {FolderCompleted: on_folder_completed}


def consumers(service: ArchiveService, platform: Platform) -> list[EventConsumer]:
    from identity.domain.events import UserErased

    async def on_user_erased(envelope: Envelope[UserErased]) -> None:
        await service.on_user_erased(envelope.tenant, envelope.data.user_id)

    parapheur, identity = CONSUMERS
    return [
        EventConsumer(platform.js, parapheur, parapheur_handler(service, platform)),  # type: ignore[arg-type]
        EventConsumer(platform.js, identity, {UserErased: on_user_erased}),
    ]


async def seal_loop(service: ArchiveService, interval_s: float, stop: asyncio.Event) -> None:
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval_s)
        if stop.is_set():
            return
        for tenant in await service.journal.tenants():
            try:
                await service.seal(tenant)
            except errors.NothingToSeal:
                continue
            except TimestampRefused as error:
                log.warning("archive.seal_postponed", tenant=tenant, error=str(error))


async def audit_loop(
    service: ArchiveService, settings: ArchiveSettings, stop: asyncio.Event
) -> None:
    while not stop.is_set():
        tenants = await service.journal.tenants()
        failures = await service.audit(tenants, settings.fixity_rate_bytes_s, stop)
        log.info("archive.audit_pass", tenants=len(tenants), failures=failures)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=settings.fixity_cycle_s)


async def wire(platform: Platform, timestamper: Timestamper | None = None) -> Wiring:
    settings = platform.settings
    assert isinstance(settings, ArchiveSettings)
    service = build_service(platform, settings, timestamper)
    verifier = TokenVerifier.for_service(settings, "mutualis:archive")
    xsd_dir = settings.seda_xsd_dir or default_schema_dir()
    try:
        schema_dir(xsd_dir)
    except SedaSchemasMissing as error:
        # Said at start-up so the operator learns it before an archivist does; everything but
        # SEDA export and import still works, and those answer 503 with the same message.
        log.warning("archive.seda_schemas_missing", error=str(error))
    seda = SedaPackages(service, xsd_dir, settings.work_dir)
    app = create_app(
        title="Mutualis archive",
        version="0.1.0",
        settings=settings,
        readiness={
            "nats": nats_readiness(
                lambda: platform.nc, lambda: platform.js, [EVENTS_STREAM, JOURNAL_STREAM]
            )
        },
        upload_limits={"/v1/archive/": settings.max_upload_bytes},
    )
    app.include_router(archive_router(service, verifier, seda, settings.work_dir))
    app.state.archive = service

    async def sealing(stop: asyncio.Event) -> None:
        await seal_loop(service, settings.seal_interval_s, stop)

    async def auditing(stop: asyncio.Event) -> None:
        await audit_loop(service, settings, stop)

    return Wiring(app=app, consumers=consumers(service, platform), background=[sealing, auditing])
