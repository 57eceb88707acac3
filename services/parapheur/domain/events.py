"""The parapheur's events: facts about folders moving through their circuits, and delegations.

Each folder is an event-sourced aggregate (`aggregate="folder"`, its id in the subject); the
payloads carry everything a consumer needs (archive ingests `folder.completed` alone) and no
personal data beyond user ids and, in a signature's `certificate_subject`, the signer's name
as their certificate (and so the signed PDF) gives it. Both stay as they were signed even after
an erasure; the parapheur's views pseudonymise them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from mutualis_kernel.events import Event, domain_event

StepKind = Literal["visa", "signature", "seal"]
ActorKind = Literal["user", "desk"]
StepMode = Literal["any", "all"]


class _Value(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ActorRef(_Value):
    """Who may act on a step: one user, or a desk ("bureau") that several agents hold."""

    kind: ActorKind
    id: str = Field(min_length=1, max_length=128)

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.id}"


class StepSpec(_Value):
    """One step of a circuit. A seal step has no actors: the service applies the tenant's seal."""

    kind: StepKind
    actors: tuple[ActorRef, ...] = ()
    mode: StepMode = "any"
    label: str = ""


class CircuitSpec(_Value):
    """A circuit type as it was when a folder was submitted (later edits do not apply)."""

    id: str
    name: str
    steps: tuple[StepSpec, ...]


class DocumentRef(_Value):
    """A file in the parapheur's object store."""

    object_name: str
    filename: str
    sha256: str
    size: int
    content_type: str = "application/pdf"


class SignatureInfo(_Value):
    """What a signature or seal step put into the PDF."""

    step: int
    kind: Literal["signature", "seal"]
    signer: str
    on_behalf_of: str | None = None
    field_name: str
    certificate_subject: str
    certificate_sha256: str
    level: str
    signed_at: datetime
    timestamp_at: datetime | None = None
    reason: str = ""
    location: str = ""


@domain_event("parapheur", "folder.drafted", aggregate="folder")
class FolderDrafted(Event):
    """A folder was prepared (documents stored) but not yet sent into its circuit."""

    folder_id: str
    title: str
    circuit_id: str
    document: DocumentRef
    attachments: tuple[DocumentRef, ...] = ()
    metadata: dict[str, str] = Field(default_factory=dict)
    created_by: str
    due_at: datetime | None = None
    created_at: datetime


@domain_event("parapheur", "folder.submitted", aggregate="folder")
class FolderSubmitted(Event):
    """A folder entered its circuit: main PDF, attachments, metadata and the circuit's steps."""

    folder_id: str
    title: str
    circuit: CircuitSpec
    document: DocumentRef
    attachments: tuple[DocumentRef, ...] = ()
    metadata: dict[str, str] = Field(default_factory=dict)
    submitted_by: str
    submitter_kind: Literal["agent", "service", "citizen"] = "agent"
    due_at: datetime | None = None
    submitted_at: datetime


@domain_event("parapheur", "step.assigned", aggregate="folder")
class StepAssigned(Event):
    """A step became current: `users` and `desks` must act (one of them, or all) by `due_at`."""

    step: int
    kind: StepKind
    mode: StepMode
    users: tuple[str, ...] = ()
    desks: tuple[str, ...] = ()
    due_at: datetime | None = None


@domain_event("parapheur", "step.approved", aggregate="folder")
class StepApproved(Event):
    """An actor gave their visa; `on_behalf_of` names the person they stood in for."""

    step: int
    actor: str
    slot: str
    on_behalf_of: str | None = None
    comment: str = ""
    at: datetime


@domain_event("parapheur", "step.signed", aggregate="folder")
class StepSigned(Event):
    """A signature or seal was added to the main PDF, giving a new version of it."""

    step: int
    actor: str
    slot: str
    on_behalf_of: str | None = None
    comment: str = ""
    document: DocumentRef
    signature: SignatureInfo
    at: datetime


@domain_event("parapheur", "step.rejected", aggregate="folder")
class StepRejected(Event):
    """An actor refused the folder at a step, with the reason."""

    step: int
    actor: str
    on_behalf_of: str | None = None
    reason: str
    at: datetime


@domain_event("parapheur", "folder.withdrawn", aggregate="folder")
class FolderWithdrawn(Event):
    """The submitter took the folder back before anyone acted on the current step."""

    by: str
    step: int
    reason: str = ""
    at: datetime


@domain_event("parapheur", "folder.rejected", aggregate="folder")
class FolderRejected(Event):
    """The folder left its circuit refused, returned to its submitter with the reason."""

    step: int
    by: str
    reason: str
    returned_to: str


@domain_event("parapheur", "folder.completed", aggregate="folder")
class FolderCompleted(Event):
    """Every step is done: the final PDF (what the archive ingests) and its signatures."""

    folder_id: str
    title: str
    circuit_id: str
    circuit_name: str
    document: DocumentRef
    signatures: tuple[SignatureInfo, ...] = ()
    metadata: dict[str, str] = Field(default_factory=dict)
    submitted_by: str
    completed_at: datetime


@domain_event("parapheur", "reminder.due", aggregate="folder")
class ReminderDue(Event):
    """The folder's due date is near and its current step still waits for these actors."""

    step: int
    due_at: datetime
    users: tuple[str, ...] = ()
    desks: tuple[str, ...] = ()


@domain_event("parapheur", "folder.overdue", aggregate="folder")
class FolderOverdue(Event):
    """The folder's due date passed while it was still in its circuit."""

    step: int
    due_at: datetime
    users: tuple[str, ...] = ()
    desks: tuple[str, ...] = ()


@domain_event("parapheur", "delegation.granted", aggregate="delegation")
class DelegationGranted(Event):
    """`delegator` lets `delegate` act for them and their `desks` from `starts_at` to `ends_at`."""

    delegation_id: str
    delegator: str
    delegate: str
    desks: tuple[str, ...] = ()
    starts_at: datetime
    ends_at: datetime


@domain_event("parapheur", "delegation.revoked", aggregate="delegation")
class DelegationRevoked(Event):
    """A delegation ended before its term."""

    delegation_id: str
    by: str


FOLDER_EVENTS: tuple[type[Event], ...] = (
    FolderDrafted,
    FolderSubmitted,
    StepAssigned,
    StepApproved,
    StepSigned,
    StepRejected,
    FolderWithdrawn,
    FolderRejected,
    FolderCompleted,
    ReminderDue,
    FolderOverdue,
)
