"""What `mutualis archive verify|seals|seal|seal-export|export|import` call: functions taking a
JetStream context and the archive's settings (TSA, trust anchors, SEDA schemas) and returning
pydantic reports. They run the archive's own service layer in the caller's process, so a
verification does not depend on the archive service being up. No printing here.
"""

from __future__ import annotations

import base64
import contextlib
from pathlib import Path

from nats.js import JetStreamContext
from pydantic import BaseModel

from archive.adapters.content import ContentStore
from archive.adapters.journal import JetStreamJournal
from archive.adapters.records import RecordRepository
from archive.adapters.seda import SedaPackages
from archive.adapters.seda_schemas import default_schema_dir
from archive.adapters.timestamper import RemoteTsa
from archive.domain.commands import Actor
from archive.manifest import CONTENT
from archive.service_layer.handlers import ArchiveService
from archive.service_layer.ports import Timestamper
from archive.service_layer.reports import SealInfo, VerifyReport
from archive.settings import ArchiveSettings
from mutualis_kernel.bus.publisher import EventPublisher
from mutualis_kernel.bus.store import EventStore

#: Who the journal names for what the command line does (an archivist's rights, no person's
#: name: journal entries hold subject ids only).
CLI_ACTOR = Actor("operator:mutualis-cli", frozenset({"archivist"}))


class SealExport(BaseModel):
    tenant: str
    number: int
    directory: Path
    data_file: Path
    token_file: Path
    chain_file: Path
    verify_command: str


class ExportReport(BaseModel):
    tenant: str
    package: Path
    record_ids: list[str]


class ImportReport(BaseModel):
    tenant: str
    package: Path
    record_ids: list[str]


def service_for(
    js: JetStreamContext, settings: ArchiveSettings, timestamper: Timestamper | None = None
) -> ArchiveService:
    return ArchiveService(
        publisher=EventPublisher(js, source_service="archive", datacenter=settings.datacenter),
        records=RecordRepository(js, EventStore(js)),
        content=ContentStore(js, CONTENT),
        journal=JetStreamJournal(js),
        timestamper=timestamper
        or RemoteTsa(settings.tsa_url, settings.tsa_ca_file, settings.tsa_chain_file),
        work_dir=settings.work_dir,
    )


def packages_for(service: ArchiveService, settings: ArchiveSettings) -> SedaPackages:
    return SedaPackages(service, settings.seda_xsd_dir or default_schema_dir(), settings.work_dir)


async def verify(
    js: JetStreamContext,
    settings: ArchiveSettings,
    tenant: str | None = None,
    *,
    check_objects: bool = True,
) -> list[VerifyReport]:
    """One report per tenant (every tenant with a journal when `tenant` is None)."""
    service = service_for(js, settings)
    tenants = [tenant] if tenant else await service.journal.tenants()
    return [await service.verify(t, check_objects=check_objects) for t in tenants]


async def seals(js: JetStreamContext, settings: ArchiveSettings, tenant: str) -> list[SealInfo]:
    return await service_for(js, settings).seals(tenant)


async def seal(js: JetStreamContext, settings: ArchiveSettings, tenant: str) -> SealInfo:
    """Seal the tenant's journal now (`errors.NothingToSeal` when nothing is new)."""
    return await service_for(js, settings).seal(tenant)


async def seal_export(
    js: JetStreamContext, settings: ArchiveSettings, tenant: str, number: int, out: Path
) -> SealExport:
    """Write seal `number`'s token (.tsr), the exact bytes it timestamps and the TSA chain."""
    stored = await service_for(js, settings).find_seal(tenant, number)
    out.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - a CLI helper, one small write
    stem = f"{tenant}-seal-{number:06d}"
    data_file, token_file, chain_file = (
        out / f"{stem}.json",
        out / f"{stem}.tsr",
        out / f"{stem}-tsa-chain.pem",
    )
    data_file.write_bytes(stored.statement_bytes)
    token_file.write_bytes(base64.b64decode(stored.tsr_b64))
    chain_file.write_text(stored.tsa_chain_pem)
    return SealExport(
        tenant=tenant,
        number=number,
        directory=out,
        data_file=data_file,
        token_file=token_file,
        chain_file=chain_file,
        verify_command=(
            f"openssl ts -verify -data {data_file.name} -in {token_file.name} "
            f"-CAfile {chain_file.name}"
        ),
    )


async def export(
    js: JetStreamContext,
    settings: ArchiveSettings,
    tenant: str,
    out: Path,
    record_ids: list[str] | None = None,
) -> ExportReport:
    """A SEDA 2.2 ArchiveTransfer of the records (every active one when `record_ids` is None).

    Written beside `out` and renamed once complete: a failed export leaves no package that
    looks whole."""
    service = service_for(js, settings)
    partial = out.with_name(out.name + ".partial")
    try:
        ids = await packages_for(service, settings).export(tenant, record_ids, partial, CLI_ACTOR)
        partial.replace(out)
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
    return ExportReport(tenant=tenant, package=out, record_ids=ids)


async def import_package(
    js: JetStreamContext, settings: ArchiveSettings, tenant: str, package: Path
) -> ImportReport:
    """Validate a SEDA 2.2 package and ingest its records into `tenant` (hashes checked)."""
    service = service_for(js, settings)
    ids = await packages_for(service, settings).import_package(tenant, package, CLI_ACTOR)
    return ImportReport(tenant=tenant, package=package, record_ids=ids)
