"""The parapheur's handlers: plain async functions of (command, deps).

Each loads a folder, lets the domain decide, stores the recorded events with optimistic
concurrency and only then does what follows (the automatic seal, deadlines). Documents are
stored before the event that references them, and deleted again if that event is refused,
so nothing is left half-stored.
"""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, Literal

import structlog

from mutualis_kernel.bus.publisher import EventPublisher
from mutualis_kernel.events import new_event_id
from parapheur.domain import errors
from parapheur.domain.commands import (
    ActOnStep,
    ApplySeal,
    DeadlineReached,
    GrantDelegation,
    RevokeDelegation,
    SubmitDraft,
    SubmitFolder,
    TakeBack,
    UploadedFile,
)
from parapheur.domain.events import (
    CircuitSpec,
    DelegationGranted,
    DelegationRevoked,
    DocumentRef,
    SignatureInfo,
    StepSpec,
)
from parapheur.domain.model import Delegation, Folder, validate_circuit
from parapheur.service_layer.ports import (
    CircuitRepository,
    DeadlineScheduler,
    DelegationRepository,
    DocumentSigner,
    DocumentStore,
    FolderRepository,
    LoadedFolder,
    PdfInspector,
    SignatureRequest,
)

log = structlog.get_logger("parapheur.handlers")

CHUNK = 1024 * 1024


class SigningUnavailable(errors.ParapheurError):
    code = "signing_unavailable"
    status = 503


@dataclass
class Deps:
    folders: FolderRepository
    documents: DocumentStore
    circuits: CircuitRepository
    delegations: DelegationRepository
    inspector: PdfInspector
    deadlines: DeadlineScheduler
    publisher: EventPublisher
    signer: DocumentSigner | None
    workdir: Path
    reminder_before: timedelta = timedelta(days=1)
    signature_location: str = ""
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    #: Called with every folder state just stored (the local tasks projection listens).
    on_saved: list[Callable[[Folder, int], None]] = field(default_factory=list)


# -- circuits --------------------------------------------------------------------------------
async def define_circuit(tenant: str, circuit: CircuitSpec, deps: Deps) -> CircuitSpec:
    validate_circuit(circuit)
    await deps.circuits.put(tenant, circuit)
    return circuit


async def delete_circuit(tenant: str, circuit_id: str, deps: Deps) -> None:
    if not await deps.circuits.delete(tenant, circuit_id):
        raise errors.CircuitNotFound(f"no circuit type {circuit_id!r}")


# -- folders ---------------------------------------------------------------------------------
def _sha256_and_size(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as source:
        while chunk := source.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


async def _store(deps: Deps, name: str, upload: UploadedFile) -> DocumentRef:
    sha256, size = await asyncio.to_thread(_sha256_and_size, upload.path)
    with upload.path.open("rb") as source:
        await deps.documents.put(name, source, upload.content_type)
    return DocumentRef(
        object_name=name,
        filename=upload.filename,
        sha256=sha256,
        size=size,
        content_type=upload.content_type,
    )


def _safe_filename(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)[:100]
    return cleaned or "file"


async def submit_folder(command: SubmitFolder, deps: Deps) -> Folder:
    circuit = await deps.circuits.get(command.tenant, command.circuit_id)
    if circuit is None:
        raise errors.CircuitNotFound(f"no circuit type {command.circuit_id!r} in this tenant")
    await asyncio.to_thread(deps.inspector.check, command.document.path)
    folder_id = command.folder_id or new_event_id()
    loaded = await deps.folders.load(command.tenant, folder_id)
    if loaded.folder.exists:
        # A retried submission (same idempotency key): its documents are stored already.
        raise errors.AlreadySubmitted(f"folder {folder_id} exists already")
    now = deps.clock()
    stored: list[str] = []
    try:
        # A random part in every name: two racing submissions of one folder id (a retried
        # request) never share objects, so the loser's cleanup cannot touch the winner's.
        batch = uuid.uuid4().hex[:8]
        # Named before the upload so that a half-done upload is cleaned up as well.
        stored.append(f"{command.tenant}/{folder_id}/v0-{batch}.pdf")
        main = await _store(deps, stored[0], command.document)
        attachments = []
        for index, attachment in enumerate(command.attachments):
            safe = _safe_filename(attachment.filename)
            stored.append(f"{command.tenant}/{folder_id}/att/{batch}/{index}-{safe}")
            attachments.append(await _store(deps, stored[-1], attachment))
        if command.draft:
            loaded.folder.draft(
                title=command.title,
                circuit_id=circuit.id,
                document=main,
                attachments=attachments,
                metadata=command.metadata,
                created_by=command.submitted_by,
                due_at=command.due_at,
                now=now,
            )
            await _save(loaded, deps)
            return loaded.folder
        loaded.folder.submit(
            title=command.title,
            circuit=circuit,
            document=main,
            attachments=attachments,
            metadata=command.metadata,
            submitted_by=command.submitted_by,
            submitter_kind=command.submitter_kind,
            due_at=command.due_at,
            now=now,
        )
        await _save(loaded, deps)
    except BaseException:
        await _forget(deps, stored)
        raise
    await _schedule_deadlines(loaded.folder, deps)
    return await _seal_if_due(loaded, deps)


async def _schedule_deadlines(folder: Folder, deps: Deps) -> None:
    if folder.due_at is None:
        return
    reminder_at = max(folder.due_at - deps.reminder_before, deps.clock())
    await deps.deadlines.schedule(folder.tenant, folder.id, "reminder", reminder_at)
    await deps.deadlines.schedule(folder.tenant, folder.id, "overdue", folder.due_at)


async def submit_draft(command: SubmitDraft, deps: Deps) -> Folder:
    loaded = await deps.folders.load(command.tenant, command.folder_id)
    folder = loaded.folder
    if not folder.exists:
        raise errors.FolderNotFound(f"no folder {command.folder_id}")
    if folder.status != "draft":
        raise errors.AlreadySubmitted(f"folder {command.folder_id} was already submitted")
    circuit = await deps.circuits.get(command.tenant, folder.draft_circuit_id or "")
    if circuit is None:
        raise errors.CircuitNotFound(f"circuit type {folder.draft_circuit_id!r} is gone")
    loaded.folder.submit_draft(circuit, command.by, deps.clock(), command.submitter_kind)
    await _save(loaded, deps)
    await _schedule_deadlines(loaded.folder, deps)
    return await _seal_if_due(loaded, deps)


async def _forget(deps: Deps, names: list[str]) -> None:
    for name in names:
        try:
            await deps.documents.delete(name)
        except Exception as error:  # noqa: BLE001 - cleanup must not hide the first error
            log.warning("document.cleanup_failed", object=name, error=repr(error))


async def _save(loaded: LoadedFolder, deps: Deps) -> None:
    loaded.version = await deps.folders.save(loaded)
    for listener in deps.on_saved:
        listener(loaded.folder, loaded.version)


async def _load_open(tenant: str, folder_id: str, deps: Deps) -> LoadedFolder:
    loaded = await deps.folders.load(tenant, folder_id)
    if not loaded.folder.exists:
        raise errors.FolderNotFound(f"no folder {folder_id}")
    # Repair follow-ups a crash may have left unrecorded before deciding anything new.
    loaded.folder.catch_up(deps.clock())
    if loaded.folder.pending:
        await _save(loaded, deps)
    return loaded


async def get_folder(tenant: str, folder_id: str, deps: Deps) -> LoadedFolder:
    loaded = await deps.folders.load(tenant, folder_id)
    if not loaded.folder.exists:
        raise errors.FolderNotFound(f"no folder {folder_id}")
    return loaded


async def act_on_step(command: ActOnStep, deps: Deps) -> Folder:
    loaded = await _load_open(command.tenant, command.folder_id, deps)
    folder = loaded.folder
    now = deps.clock()
    delegations = await deps.delegations.list(command.tenant)
    if command.action == "approve":
        folder.approve(command.step, command.agent, delegations, command.comment, now)
        await _save(loaded, deps)
    elif command.action == "reject":
        folder.reject(command.step, command.agent, delegations, command.comment, now)
        await _save(loaded, deps)
    else:
        # Refuse cheaply before spending a signature.
        authority = folder.authorise(command.step, "sign", command.agent, delegations, now)

        def record(document: DocumentRef, signature: SignatureInfo) -> None:
            folder.sign(
                command.step,
                command.agent,
                delegations,
                command.comment,
                document,
                signature,
                now,
            )

        await _sign_and_store(
            loaded,
            deps,
            "signature",
            command.agent.user_id,
            authority.on_behalf_of,
            command.comment,
            record,
            signer_name=command.agent.name,
        )
    return await _seal_if_due(loaded, deps)


async def _sign_and_store(
    loaded: LoadedFolder,
    deps: Deps,
    kind: Literal["signature", "seal"],
    signer: str,
    on_behalf_of: str | None,
    comment: str,
    record: Callable[[DocumentRef, SignatureInfo], None],
    *,
    signer_name: str | None = None,
) -> None:
    folder = loaded.folder
    if deps.signer is None:
        raise SigningUnavailable("no signing service is configured on this instance")
    assert folder.document is not None
    assert folder.circuit is not None
    step = folder.current_step
    spec = folder.steps[step]
    version = len(folder.signatures) + 1
    name = f"{folder.tenant}/{folder.id}/v{version}-{uuid.uuid4().hex[:8]}.pdf"
    request = SignatureRequest(
        tenant=folder.tenant,
        folder_id=folder.id,
        title=folder.title,
        step=step,
        kind=kind,
        signer=signer,
        on_behalf_of=on_behalf_of,
        reason=signature_reason(
            folder.circuit.name, step, len(folder.steps), spec, folder.title, comment
        ),
        location=deps.signature_location or folder.tenant,
        # Unique even when several people sign one "all" step.
        field_name=f"Sig{version}-Step{step + 1}-{kind}",
        signer_name=signer_name,
    )
    deps.workdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=deps.workdir) as scratch:
        source, target = Path(scratch) / "in.pdf", Path(scratch) / "out.pdf"
        with source.open("wb") as sink:
            await deps.documents.get_into(folder.document.object_name, sink)
        applied = await deps.signer.sign(request, source, target)
        upload = UploadedFile(target, folder.document.filename)
        try:
            document = await _store(deps, name, upload)
        except BaseException:
            await _forget(deps, [name])
            raise
    signature = SignatureInfo(
        step=step,
        kind=kind,
        signer=signer,
        on_behalf_of=on_behalf_of,
        field_name=applied.field_name,
        certificate_subject=applied.certificate_subject,
        certificate_sha256=applied.certificate_sha256,
        level=applied.level,
        signed_at=applied.signed_at,
        timestamp_at=applied.timestamp_at,
        reason=request.reason,
        location=request.location,
    )
    try:
        record(document, signature)
        await _save(loaded, deps)
    except BaseException:
        await _forget(deps, [name])
        raise


def signature_reason(
    circuit: str, step: int, steps: int, spec: StepSpec, title: str, comment: str
) -> str:
    """What the signature says it is for: always the circuit and the step (a verifier shows
    nothing else about where in the circuit it was made), then the signer's comment if any."""
    reason = f"{circuit}, step {step + 1}/{steps} ({spec.label or spec.kind}): {title}"
    return f"{reason} — {comment}" if comment else reason


async def _seal_if_due(loaded: LoadedFolder, deps: Deps, *, defer: bool = True) -> Folder:
    """Apply due seals now. When that fails and `defer`, the human action that led here still
    stands: the `parapheur-seals` consumer applies the seal later."""
    try:
        return await _apply_due_seals(loaded, deps)
    except errors.ParapheurError as error:
        if not defer:
            raise
        log.warning("seal.deferred", folder=loaded.folder.id, reason=error.detail)
        return loaded.folder


async def _apply_due_seals(loaded: LoadedFolder, deps: Deps) -> Folder:
    folder = loaded.folder
    while folder.awaits_seal and deps.signer is not None:
        record = partial(_record_seal, folder, deps.clock())
        try:
            await _sign_and_store(loaded, deps, "seal", folder.tenant, None, "", record)
        except errors.ConcurrentAction:
            # Another instance applied it: its state is the truth.
            loaded = await deps.folders.load(folder.tenant, folder.id)
            folder = loaded.folder
    return folder


def _record_seal(
    folder: Folder, now: datetime, document: DocumentRef, signature: SignatureInfo
) -> None:
    folder.seal(folder.current_step, document, signature, now)


async def apply_seal(command: ApplySeal, deps: Deps) -> Folder:
    """Apply the seal a folder waits for, if it still does; errors propagate (to be retried)."""
    loaded = await _load_open(command.tenant, command.folder_id, deps)
    return await _seal_if_due(loaded, deps, defer=False)


async def take_back(command: TakeBack, deps: Deps) -> Folder:
    loaded = await _load_open(command.tenant, command.folder_id, deps)
    loaded.folder.take_back(command.by, command.reason, deps.clock())
    await _save(loaded, deps)
    return loaded.folder


async def deadline_reached(command: DeadlineReached, deps: Deps) -> bool:
    """Record the reminder or the overdue notice, once; False when nothing was due."""
    try:
        loaded = await deps.folders.load(command.tenant, command.folder_id)
    except errors.FolderNotFound:
        return False
    folder = loaded.folder
    now = deps.clock()
    recorded = folder.remind(now) if command.which == "reminder" else folder.mark_overdue(now)
    if recorded:
        await _save(loaded, deps)
    return recorded


# -- delegations -----------------------------------------------------------------------------
async def grant_delegation(command: GrantDelegation, deps: Deps) -> Delegation:
    if command.delegate == command.delegator:
        raise errors.InvalidDelegation("one cannot delegate to oneself")
    if command.ends_at <= command.starts_at:
        raise errors.InvalidDelegation("a delegation must end after it starts")
    delegation = Delegation(
        id=new_event_id(),
        delegator=command.delegator,
        delegate=command.delegate,
        desks=command.desks,
        starts_at=command.starts_at,
        ends_at=command.ends_at,
    )
    await deps.delegations.put(command.tenant, delegation)
    await deps.publisher.publish(
        DelegationGranted(
            delegation_id=delegation.id,
            delegator=delegation.delegator,
            delegate=delegation.delegate,
            desks=tuple(sorted(delegation.desks)),
            starts_at=delegation.starts_at,
            ends_at=delegation.ends_at,
        ),
        tenant=command.tenant,
        aggregate_id=delegation.id,
    )
    return delegation


async def revoke_delegation(command: RevokeDelegation, deps: Deps) -> Delegation:
    delegation = await deps.delegations.get(command.tenant, command.delegation_id)
    if delegation is None:
        raise errors.DelegationNotFound(f"no delegation {command.delegation_id}")
    if command.by not in (delegation.delegator, delegation.delegate):
        raise errors.NotAnActor("only the delegator or the delegate can end a delegation")
    revoked = Delegation(**{**delegation.__dict__, "revoked": True})
    await deps.delegations.put(command.tenant, revoked)
    await deps.publisher.publish(
        DelegationRevoked(delegation_id=delegation.id, by=command.by),
        tenant=command.tenant,
        aggregate_id=delegation.id,
    )
    return revoked


HANDLERS: dict[type[Any], Callable[..., Awaitable[Any]]] = {
    SubmitFolder: submit_folder,
    SubmitDraft: submit_draft,
    ActOnStep: act_on_step,
    TakeBack: take_back,
    ApplySeal: apply_seal,
    DeadlineReached: deadline_reached,
    GrantDelegation: grant_delegation,
    RevokeDelegation: revoke_delegation,
}
