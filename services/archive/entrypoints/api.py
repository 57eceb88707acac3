"""The archive's HTTP API (`/v1/archive/...`): parse, call the service layer, map errors.

Every route is tenant-scoped by the access token (audience `mutualis:archive`); the tenant in
the path must be the caller's own (platform administrators excepted). Ingest is a multipart
upload (`metadata` JSON + `file`), spooled to disk by the multipart parser, never held whole.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from datetime import date
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Query, UploadFile
from fastapi.responses import FileResponse, StreamingResponse
from pydantic import BaseModel, Field, ValidationError
from starlette.background import BackgroundTask

from archive.adapters.content import stage
from archive.adapters.seda import SedaPackages
from archive.domain import errors
from archive.domain.commands import Actor, Ingest
from archive.domain.model import Record, RecordMetadata
from archive.service_layer.handlers import ArchiveService, SearchQuery
from archive.service_layer.reports import DisposalResult, SealInfo, VerifyReport
from mutualis_kernel.auth import Principal, TokenVerifier, authenticated, require_tenant
from mutualis_kernel.http import ApiError, readable_errors

READERS = ("agent", "archivist")
ARCHIVISTS = ("archivist",)
PRODUCERS = ("agent", "archivist")


class HoldRequest(BaseModel):
    reason: str = Field(min_length=1, max_length=2000)


class DisposalRequest(BaseModel):
    record_ids: list[str] = Field(min_length=1, max_length=10_000)


class ExportRequest(BaseModel):
    record_ids: list[str] = Field(default_factory=list)


class ImportResult(BaseModel):
    record_ids: list[str]


def _actor(principal: Principal) -> Actor:
    return Actor(principal.subject, frozenset(principal.roles))


def _fail(error: errors.ArchiveError) -> ApiError:
    return ApiError(error.status, error.code, error.detail)


def archive_router(
    service: ArchiveService,
    verifier: TokenVerifier | Callable[[], TokenVerifier],
    seda: SedaPackages,
    work_dir: Path | None = None,
) -> APIRouter:
    router = APIRouter(prefix="/v1/archive/{tenant}", tags=["archive"])
    readers = Depends(authenticated(verifier, roles=READERS))
    archivists = Depends(authenticated(verifier, roles=ARCHIVISTS))
    producers = Depends(authenticated(verifier, roles=PRODUCERS, kinds=("agent", "service")))

    @router.post("/records", status_code=201)
    async def ingest(
        tenant: str,
        metadata: Annotated[str, Form(description="RecordMetadata as JSON")],
        file: Annotated[UploadFile, File()],
        idempotency_key: Annotated[str, Form(min_length=1, max_length=200)],
        sha256: Annotated[str | None, Form()] = None,
        sha512: Annotated[str | None, Form()] = None,
        principal: Principal = producers,
    ) -> Record:
        require_tenant(principal, tenant)
        try:
            parsed = RecordMetadata.model_validate(json.loads(metadata))
        except (ValueError, ValidationError) as error:
            detail = (
                readable_errors(error.errors())
                if isinstance(error, ValidationError)
                else str(error)
            )
            raise ApiError(422, "invalid_metadata", detail) from None
        staged = await stage(file.file, work_dir)
        try:
            record, _ = await service.ingest(
                Ingest(
                    tenant=tenant,
                    metadata=parsed,
                    filename=file.filename or "content",
                    source="api",
                    cause=idempotency_key,
                    by=_actor(principal),
                    declared_sha256=sha256,
                    declared_sha512=sha512,
                ),
                staged,
            )
        except errors.ArchiveError as error:
            raise _fail(error) from None
        finally:
            staged.discard()
        return record

    @router.get("/records")
    async def search(
        tenant: str,
        title: str | None = None,
        document_type: str | None = None,
        originating_service: str | None = None,
        keyword: str | None = None,
        date_from: date | None = None,
        date_to: date | None = None,
        status: str | None = None,
        principal: Principal = readers,
    ) -> list[Record]:
        require_tenant(principal, tenant)
        query = SearchQuery(
            title, document_type, originating_service, keyword, date_from, date_to, status
        )
        return await service.search(tenant, query, _actor(principal))

    @router.get("/records/{record_id}")
    async def get(tenant: str, record_id: str, principal: Principal = readers) -> Record:
        require_tenant(principal, tenant)
        try:
            return await service.get(tenant, record_id, _actor(principal))
        except errors.ArchiveError as error:
            raise _fail(error) from None

    @router.get("/records/{record_id}/content")
    async def download(
        tenant: str, record_id: str, principal: Principal = readers
    ) -> StreamingResponse:
        require_tenant(principal, tenant)
        try:
            record, chunks = await service.download(tenant, record_id, _actor(principal))
        except errors.ArchiveError as error:
            raise _fail(error) from None
        headers = {
            "Content-Length": str(record.content.size),
            "Digest": f"sha-256={record.content.sha256}",
            "Content-Disposition": f'attachment; filename="{_safe(record.content.filename)}"',
        }
        return StreamingResponse(
            chunks, media_type=record.content.format.mime_type, headers=headers
        )

    @router.post("/records/{record_id}/holds", status_code=201)
    async def place_hold(
        tenant: str, record_id: str, body: HoldRequest, principal: Principal = archivists
    ) -> Record:
        require_tenant(principal, tenant)
        try:
            return await service.place_hold(tenant, record_id, body.reason, _actor(principal))
        except errors.ArchiveError as error:
            raise _fail(error) from None

    @router.delete("/records/{record_id}/holds/{hold_id}")
    async def release_hold(
        tenant: str, record_id: str, hold_id: str, principal: Principal = archivists
    ) -> Record:
        require_tenant(principal, tenant)
        try:
            return await service.release_hold(tenant, record_id, hold_id, _actor(principal))
        except errors.ArchiveError as error:
            raise _fail(error) from None

    @router.get("/disposals/candidates")
    async def candidates(tenant: str, principal: Principal = archivists) -> list[Record]:
        require_tenant(principal, tenant)
        return await service.disposal_candidates(tenant)

    @router.post("/disposals", status_code=201)
    async def approve(
        tenant: str, body: DisposalRequest, principal: Principal = archivists
    ) -> DisposalResult:
        require_tenant(principal, tenant)
        try:
            return await service.approve_disposal(tenant, body.record_ids, _actor(principal))
        except errors.ArchiveError as error:
            raise _fail(error) from None

    @router.post("/seals", status_code=201)
    async def seal_now(tenant: str, principal: Principal = archivists) -> SealInfo:
        require_tenant(principal, tenant)
        try:
            return await service.seal(tenant)
        except errors.ArchiveError as error:
            raise _fail(error) from None

    @router.get("/seals")
    async def seals(tenant: str, principal: Principal = archivists) -> list[SealInfo]:
        require_tenant(principal, tenant)
        return await service.seals(tenant)

    @router.post("/verify")
    async def verify(
        tenant: str, objects: bool = Query(default=True), principal: Principal = archivists
    ) -> VerifyReport:
        require_tenant(principal, tenant)
        return await service.verify(tenant, check_objects=objects)

    @router.post("/exports")
    async def export(
        tenant: str, body: ExportRequest, principal: Principal = archivists
    ) -> FileResponse:
        require_tenant(principal, tenant)
        directory = Path(tempfile.mkdtemp(prefix="archive-export-", dir=work_dir))
        target = directory / "transfer.zip"
        try:
            await seda.export(tenant, body.record_ids or None, target, _actor(principal))
        except errors.ArchiveError as error:
            shutil.rmtree(directory, ignore_errors=True)
            raise _fail(error) from None
        return FileResponse(
            target,
            media_type="application/zip",
            filename=f"{tenant}-archive-transfer.zip",
            background=BackgroundTask(shutil.rmtree, directory, True),
        )

    @router.post("/imports", status_code=201)
    async def import_package(
        tenant: str, package: Annotated[UploadFile, File()], principal: Principal = archivists
    ) -> ImportResult:
        require_tenant(principal, tenant)
        directory = Path(tempfile.mkdtemp(prefix="archive-import-", dir=work_dir))
        try:
            path = directory / "package.zip"
            with path.open("wb") as out:
                shutil.copyfileobj(package.file, out, 1024 * 1024)
            ids = await seda.import_package(tenant, path, _actor(principal))
        except errors.ArchiveError as error:
            raise _fail(error) from None
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        return ImportResult(record_ids=ids)

    return router


def _safe(filename: str) -> str:
    return "".join(c for c in filename if c.isprintable() and c not in '"\\/') or "content"


async def _noop() -> AsyncIterator[Any]:  # pragma: no cover - keeps the type checker calm
    if False:
        yield None
