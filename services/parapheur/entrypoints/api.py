"""The parapheur's HTTP API (`/v1`): circuit types, folders, tasks, actions, documents, proofs.

Routes parse, build a command, call the service layer and map domain refusals to 4xx with a
stable code. Every route is tenant-scoped by the access token: a folder id of another tenant
is simply not found in the caller's tenant (404, no data).

Desks: an agent holds desk `X` when their token carries the role `desk:X`.
"""

import json
import os
import re
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Form, Header, Query, Response, UploadFile
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.background import BackgroundTask

from mutualis_kernel.auth import LOA_SUBSTANTIAL, Principal, TokenVerifier, authenticated
from mutualis_kernel.events import derived_event_id
from mutualis_kernel.http import ApiError, readable_errors
from parapheur.adapters.repository import JetStreamFolders
from parapheur.domain import errors
from parapheur.domain.commands import (
    ActOnStep,
    GrantDelegation,
    RevokeDelegation,
    SubmitDraft,
    SubmitFolder,
    TakeBack,
    UploadedFile,
)
from parapheur.domain.events import CircuitSpec, StepSpec
from parapheur.domain.model import Agent, Delegation
from parapheur.service_layer import handlers
from parapheur.service_layer.ports import InvalidDocument
from parapheur.service_layer.projection import TaskBoard, TaskFilter
from parapheur.service_layer.proof import proof_html, proof_report

ID_PATTERN = r"^[A-Za-z0-9_-]{1,128}$"
SLUG_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
DESK_ROLE = "desk:"
CHUNK = 1024 * 1024


@dataclass
class ApiContext:
    deps: handlers.Deps
    board: TaskBoard
    folders: JetStreamFolders
    verifier: TokenVerifier
    max_document_bytes: int


# -- request and response bodies -------------------------------------------------------------
class CircuitIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=SLUG_PATTERN)
    name: str = Field(min_length=1, max_length=200)
    steps: list[StepSpec] = Field(min_length=1, max_length=50)


class FolderMetadata(BaseModel):
    """The `metadata` part of a submission, as JSON."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=300)
    circuit_id: str = Field(pattern=SLUG_PATTERN)
    due_at: datetime | None = None
    metadata: dict[str, str] = Field(default_factory=dict, max_length=50)
    #: Keep the folder as a draft; `POST /v1/folders/{id}/submit` sends it on later.
    draft: bool = False


class StepActionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    comment: str = Field(default="", max_length=2000)


class TakeBackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="", max_length=2000)


class DelegationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    delegate: str = Field(min_length=1, max_length=128)
    starts_at: datetime
    ends_at: datetime
    #: Desks handed over; by default every desk the delegator's token carries.
    desks: list[str] | None = None


class TaskPage(BaseModel):
    total: int
    items: list[dict[str, Any]]


# -- helpers ---------------------------------------------------------------------------------
@contextmanager
def refusals() -> Iterator[None]:
    """Domain refusals become 4xx with their stable code; nothing was recorded."""
    try:
        yield
    except errors.StepUpRequired as error:
        challenge = (
            f'Bearer error="insufficient_user_authentication", '
            f'error_description="{error.detail}", acr_values="{LOA_SUBSTANTIAL}"'
        )
        raise ApiError(
            error.status, error.code, error.detail, headers={"WWW-Authenticate": challenge}
        ) from None
    except errors.ParapheurError as error:
        raise ApiError(error.status, error.code, error.detail) from None
    except InvalidDocument as error:
        raise ApiError(422, "invalid_document", error.reason) from None


#: Longest signer name put into a certificate and a signature (an X.520 name allows 64 to
#: a common name; a longer one is cut rather than refused).
MAX_SIGNER_NAME = 64


def signer_name(principal: Principal) -> str | None:
    """The person's name from the token's `name` claim (OpenID Connect's standard claim), the
    only personal data the parapheur puts into a signature beside the certificate it issues;
    no email, no username."""
    claimed = principal.claims.get("name")
    if not isinstance(claimed, str):
        return None
    name = " ".join("".join(c for c in claimed if c.isprintable()).split())[:MAX_SIGNER_NAME]
    return name.strip() or None


def agent_of(principal: Principal) -> Agent:
    desks = frozenset(r[len(DESK_ROLE) :] for r in principal.roles if r.startswith(DESK_ROLE))
    return Agent(principal.subject, desks, principal.meets(LOA_SUBSTANTIAL), signer_name(principal))


def _delegation_json(delegation: Delegation) -> dict[str, Any]:
    return {
        "id": delegation.id,
        "delegator": delegation.delegator,
        "delegate": delegation.delegate,
        "desks": sorted(delegation.desks),
        "starts_at": delegation.starts_at.isoformat(),
        "ends_at": delegation.ends_at.isoformat(),
        "revoked": delegation.revoked,
    }


def build_router(context: ApiContext) -> APIRouter:
    verifier = context.verifier
    deps = context.deps
    board = context.board
    Member = Annotated[
        Principal,
        Depends(authenticated(verifier, roles=("agent",), kinds=("agent",))),
    ]
    Submitter = Annotated[Principal, Depends(authenticated(verifier, kinds=("agent", "service")))]
    Reader = Annotated[Principal, Depends(authenticated(verifier, kinds=("agent", "service")))]
    Admin = Annotated[
        Principal,
        Depends(authenticated(verifier, roles=("tenant-admin",), kinds=("agent",))),
    ]
    FolderId = Annotated[str, PathParam(pattern=ID_PATTERN)]
    router = APIRouter(prefix="/v1")

    # -- circuit types ------------------------------------------------------------------
    @router.get("/circuits", tags=["circuits"])
    async def list_circuits(who: Reader) -> list[CircuitSpec]:
        return list(await deps.circuits.list(who.tenant))

    @router.get("/circuits/{circuit_id}", tags=["circuits"])
    async def get_circuit(
        circuit_id: Annotated[str, PathParam(pattern=SLUG_PATTERN)], who: Reader
    ) -> CircuitSpec:
        circuit = await deps.circuits.get(who.tenant, circuit_id)
        if circuit is None:
            raise ApiError(404, "unknown_circuit", f"no circuit type {circuit_id!r}")
        return circuit

    @router.post("/circuits", status_code=201, tags=["circuits"])
    async def create_circuit(body: CircuitIn, who: Admin) -> CircuitSpec:
        if await deps.circuits.get(who.tenant, body.id) is not None:
            raise ApiError(409, "circuit_exists", f"circuit type {body.id!r} exists; PUT it")
        with refusals():
            return await handlers.define_circuit(who.tenant, _circuit(body), deps)

    @router.put("/circuits/{circuit_id}", tags=["circuits"])
    async def replace_circuit(
        circuit_id: Annotated[str, PathParam(pattern=SLUG_PATTERN)], body: CircuitIn, who: Admin
    ) -> CircuitSpec:
        if body.id != circuit_id:
            raise ApiError(422, "id_mismatch", "the body's id differs from the path's")
        with refusals():
            return await handlers.define_circuit(who.tenant, _circuit(body), deps)

    @router.delete("/circuits/{circuit_id}", status_code=204, tags=["circuits"])
    async def delete_circuit(
        circuit_id: Annotated[str, PathParam(pattern=SLUG_PATTERN)], who: Admin
    ) -> None:
        with refusals():
            await handlers.delete_circuit(who.tenant, circuit_id, deps)

    # -- folders ------------------------------------------------------------------------
    @router.post("/folders", status_code=201, tags=["folders"])
    async def submit_folder(
        who: Submitter,
        response: Response,
        document: Annotated[UploadFile, File(description="The main PDF.")],
        metadata: Annotated[str, Form(description="JSON: title, circuit_id, due_at, metadata")],
        attachments: Annotated[list[UploadFile] | None, File()] = None,
        idempotency_key: Annotated[
            str | None,
            Header(
                pattern=r"^[\x21-\x7e]{1,128}$",
                description="Retry-safe submission: the same key gives the same folder.",
            ),
        ] = None,
    ) -> dict[str, Any]:
        try:
            meta = FolderMetadata.model_validate_json(metadata)
        except ValidationError as error:
            raise ApiError(422, "invalid_metadata", readable_errors(error.errors())) from None
        folder_id = None
        if idempotency_key is not None:
            folder_id = derived_event_id(f"{who.tenant}/{who.subject}", idempotency_key)
            try:
                existing = await handlers.get_folder(who.tenant, folder_id, deps)
            except errors.FolderNotFound:
                pass
            else:
                response.status_code = 200
                return board.describe(existing.folder, existing.version)
        async with _spooled(context, [document, *(attachments or [])]) as files:
            command = SubmitFolder(
                tenant=who.tenant,
                circuit_id=meta.circuit_id,
                title=meta.title,
                document=files[0],
                attachments=tuple(files[1:]),
                metadata=meta.metadata,
                submitted_by=who.subject,
                submitter_kind=who.kind,
                due_at=meta.due_at,
                draft=meta.draft,
                folder_id=folder_id,
            )
            with refusals():
                try:
                    folder = await handlers.submit_folder(command, deps)
                except (errors.AlreadySubmitted, errors.ConcurrentAction):
                    if folder_id is None:
                        raise
                    # The same submission raced itself: answer with the one that won.
                    existing = await handlers.get_folder(who.tenant, folder_id, deps)
                    response.status_code = 200
                    return board.describe(existing.folder, existing.version)
        return board.describe(folder)

    @router.post("/folders/{folder_id}/submit", tags=["folders"])
    async def submit_draft(folder_id: FolderId, who: Submitter) -> dict[str, Any]:
        command = SubmitDraft(who.tenant, folder_id, who.subject, who.kind)
        with refusals():
            folder = await handlers.submit_draft(command, deps)
        return board.describe(folder)

    @router.get("/folders/{folder_id}", tags=["folders"])
    async def get_folder(folder_id: FolderId, who: Reader) -> dict[str, Any]:
        with refusals():
            loaded = await handlers.get_folder(who.tenant, folder_id, deps)
        return board.describe(loaded.folder, loaded.version)

    @router.get("/tasks", tags=["folders"])
    async def my_tasks(
        who: Member,
        circuit_id: str | None = None,
        step_kind: Literal["visa", "signature"] | None = None,
        overdue: bool | None = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> TaskPage:
        delegations = await deps.delegations.list(who.tenant)
        wanted = TaskFilter(circuit_id, step_kind, overdue, limit, offset)
        total, items = board.tasks(who.tenant, agent_of(who), delegations, deps.clock(), wanted)
        return TaskPage(total=total, items=items)

    @router.post("/folders/{folder_id}/steps/{step}/{action}", tags=["folders"])
    async def act(
        folder_id: FolderId,
        step: Annotated[int, PathParam(ge=0, le=100)],
        action: Literal["approve", "sign", "reject"],
        who: Member,
        body: StepActionIn | None = None,
    ) -> dict[str, Any]:
        command = ActOnStep(
            who.tenant, folder_id, step, action, agent_of(who), (body or StepActionIn()).comment
        )
        with refusals():
            folder = await handlers.act_on_step(command, deps)
        return board.describe(folder)

    @router.post("/folders/{folder_id}/take-back", tags=["folders"])
    async def take_back(
        folder_id: FolderId, who: Submitter, body: TakeBackIn | None = None
    ) -> dict[str, Any]:
        command = TakeBack(who.tenant, folder_id, who.subject, (body or TakeBackIn()).reason)
        with refusals():
            folder = await handlers.take_back(command, deps)
        return board.describe(folder)

    @router.get("/folders/{folder_id}/document", tags=["documents"])
    async def download(
        folder_id: FolderId,
        who: Reader,
        version: Literal["current", "original"] = "current",
    ) -> FileResponse:
        with refusals():
            folder = (await handlers.get_folder(who.tenant, folder_id, deps)).folder
        reference = folder.document if version == "current" else folder.original
        assert reference is not None
        return await _file_response(
            context, reference.object_name, reference.filename, "application/pdf"
        )

    @router.get("/folders/{folder_id}/attachments/{index}", tags=["documents"])
    async def attachment(
        folder_id: FolderId, index: Annotated[int, PathParam(ge=0)], who: Reader
    ) -> FileResponse:
        with refusals():
            folder = (await handlers.get_folder(who.tenant, folder_id, deps)).folder
        if index >= len(folder.attachments):
            raise ApiError(404, "attachment_not_found", f"no attachment {index}")
        found = folder.attachments[index]
        return await _file_response(context, found.object_name, found.filename, found.content_type)

    @router.get("/folders/{folder_id}/history", tags=["folders"])
    async def history(folder_id: FolderId, who: Reader) -> list[dict[str, Any]]:
        events = await context.folders.history(who.tenant, folder_id)
        if not events:
            raise ApiError(404, "folder_not_found", f"no folder {folder_id}")
        # As recorded, except that erased people are shown under their pseudonym: the stored
        # events themselves are never rewritten.
        return [
            {
                "id": e.id,
                "type": e.data.event_name,
                "time": e.time.isoformat(),
                "data": board.pseudonymised(who.tenant, e.data.model_dump(mode="json")),
            }
            for e in events
        ]

    async def _report(tenant: str, folder_id: str) -> dict[str, Any]:
        with refusals():
            loaded = await handlers.get_folder(tenant, folder_id, deps)
        events = await context.folders.history(tenant, folder_id)
        report = proof_report(loaded.folder, events, lambda user: board.shown(tenant, user))
        # Then every string, as for the history: the folder's copy of its circuit names its
        # actors too, and a field added later must not leak an id.
        return dict(board.pseudonymised(tenant, report))

    @router.get("/folders/{folder_id}/proof", tags=["documents"])
    async def proof(folder_id: FolderId, who: Reader) -> dict[str, Any]:
        return await _report(who.tenant, folder_id)

    @router.get("/folders/{folder_id}/proof.html", response_class=HTMLResponse, tags=["documents"])
    async def proof_page(folder_id: FolderId, who: Reader) -> HTMLResponse:
        return HTMLResponse(proof_html(await _report(who.tenant, folder_id)))

    # -- delegations --------------------------------------------------------------------
    @router.post("/delegations", status_code=201, tags=["delegations"])
    async def grant(body: DelegationIn, who: Member) -> dict[str, Any]:
        held = agent_of(who).desks
        desks = held if body.desks is None else frozenset(body.desks)
        if not desks <= held:
            raise ApiError(403, "not_your_desk", "one can only delegate desks one holds")
        command = GrantDelegation(
            who.tenant, who.subject, body.delegate, desks, body.starts_at, body.ends_at
        )
        with refusals():
            return _delegation_json(await handlers.grant_delegation(command, deps))

    @router.get("/delegations", tags=["delegations"])
    async def my_delegations(who: Member) -> list[dict[str, Any]]:
        found = await deps.delegations.list(who.tenant)
        mine = [d for d in found if who.subject in (d.delegator, d.delegate)]
        return [board.pseudonymised(who.tenant, _delegation_json(d)) for d in mine]

    @router.delete("/delegations/{delegation_id}", tags=["delegations"])
    async def revoke(
        delegation_id: Annotated[str, PathParam(pattern=ID_PATTERN)], who: Member
    ) -> dict[str, Any]:
        with refusals():
            revoked = await handlers.revoke_delegation(
                RevokeDelegation(who.tenant, delegation_id, who.subject), deps
            )
        return _delegation_json(revoked)

    return router


def _circuit(body: CircuitIn) -> CircuitSpec:
    return CircuitSpec(id=body.id, name=body.name, steps=tuple(body.steps))


@asynccontextmanager
async def _spooled(
    context: ApiContext, uploads: list[UploadFile]
) -> AsyncIterator[list[UploadedFile]]:
    """Copy uploads to scratch files chunk by chunk, refusing any over the size limit."""
    workdir = context.deps.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=workdir) as scratch:
        files = []
        for index, upload in enumerate(uploads):
            target = Path(scratch) / f"{index}.bin"
            size = 0
            with target.open("wb") as sink:
                while chunk := await upload.read(CHUNK):
                    size += len(chunk)
                    if size > context.max_document_bytes:
                        raise ApiError(
                            413,
                            "document_too_large",
                            f"{upload.filename or 'a file'} exceeds "
                            f"{context.max_document_bytes} bytes",
                        )
                    sink.write(chunk)
            if size == 0:
                raise ApiError(422, "invalid_document", f"{upload.filename or 'a file'} is empty")
            files.append(
                UploadedFile(
                    target,
                    _display_name(upload.filename, index),
                    upload.content_type or "application/octet-stream",
                )
            )
        if files:
            files[0] = UploadedFile(files[0].path, files[0].filename, "application/pdf")
        yield files


def _display_name(filename: str | None, index: int) -> str:
    name = Path(filename or "").name
    return re.sub(r"[^\w.\- ]", "_", name)[:200] or f"file-{index}"


async def _file_response(
    context: ApiContext, object_name: str, filename: str, media_type: str
) -> FileResponse:
    workdir = context.deps.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    descriptor, name = tempfile.mkstemp(dir=workdir, suffix=".download")
    os.close(descriptor)
    path = Path(name)
    try:
        with path.open("wb") as sink, refusals():  # noqa: ASYNC230 - a local scratch file
            await context.deps.documents.get_into(object_name, sink)
    except BaseException:
        _discard(path)
        raise
    return FileResponse(
        path,
        media_type=media_type,
        filename=filename,
        background=BackgroundTask(_discard, path),
    )


def _discard(path: Path) -> None:
    path.unlink(missing_ok=True)


def metadata_schema() -> str:
    """The JSON schema of the submission's `metadata` part, for the docs."""
    return json.dumps(FolderMetadata.model_json_schema(), indent=2)


__all__ = ["ApiContext", "build_router", "metadata_schema"]
