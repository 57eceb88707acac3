"""Commands: what callers ask the parapheur to do, in the imperative."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal

from parapheur.domain.model import Agent


@dataclass(frozen=True)
class UploadedFile:
    """A file the entry point has spooled to disk (never held whole in memory)."""

    path: Path
    filename: str
    content_type: str = "application/pdf"


@dataclass(frozen=True)
class SubmitFolder:
    tenant: str
    circuit_id: str
    title: str
    document: UploadedFile
    submitted_by: str
    submitter_kind: Literal["agent", "service", "citizen"] = "agent"
    attachments: tuple[UploadedFile, ...] = ()
    metadata: dict[str, str] = field(default_factory=dict)
    due_at: datetime | None = None
    folder_id: str | None = None
    #: Store the folder as a draft instead of sending it into its circuit now.
    draft: bool = False


@dataclass(frozen=True)
class SubmitDraft:
    tenant: str
    folder_id: str
    by: str
    submitter_kind: Literal["agent", "service", "citizen"] = "agent"


@dataclass(frozen=True)
class ActOnStep:
    tenant: str
    folder_id: str
    step: int
    action: Literal["approve", "sign", "reject"]
    agent: Agent
    comment: str = ""


@dataclass(frozen=True)
class TakeBack:
    tenant: str
    folder_id: str
    by: str
    reason: str = ""


@dataclass(frozen=True)
class ApplySeal:
    tenant: str
    folder_id: str


@dataclass(frozen=True)
class DeadlineReached:
    tenant: str
    folder_id: str
    which: Literal["reminder", "overdue"]


@dataclass(frozen=True)
class GrantDelegation:
    tenant: str
    delegator: str
    delegate: str
    desks: frozenset[str]
    starts_at: datetime
    ends_at: datetime


@dataclass(frozen=True)
class RevokeDelegation:
    tenant: str
    delegation_id: str
    by: str
