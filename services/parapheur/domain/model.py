"""The folder aggregate, its circuit's rules, delegations and who may act.

A `Folder` is rebuilt from its events (`Folder.rebuild`) and records new ones in `pending`
when a command is accepted; it never publishes. Decisive events (a step approved, signed or
rejected, a withdrawal) move the state; follow-up events (the next step assigned, the folder
completed or rejected) are derived from the state by `catch_up`, so a crash between two
appends is repaired by the next command on the folder.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from mutualis_kernel.events import Event
from parapheur.domain import errors
from parapheur.domain.events import (
    ActorRef,
    CircuitSpec,
    DocumentRef,
    FolderCompleted,
    FolderDrafted,
    FolderOverdue,
    FolderRejected,
    FolderSubmitted,
    FolderWithdrawn,
    ReminderDue,
    SignatureInfo,
    StepApproved,
    StepAssigned,
    StepRejected,
    StepSigned,
    StepSpec,
)

Status = Literal["draft", "submitted", "in_progress", "signed", "rejected", "withdrawn"]
TERMINAL: frozenset[str] = frozenset({"signed", "rejected", "withdrawn"})
SYSTEM_ACTOR = "system:seal"


def validate_circuit(circuit: CircuitSpec) -> None:
    """A circuit has at least one step; human steps name actors, seal steps none."""
    if not circuit.steps:
        raise errors.InvalidCircuit("a circuit needs at least one step")
    for index, step in enumerate(circuit.steps):
        if step.kind == "seal" and step.actors:
            raise errors.InvalidCircuit(f"step {index}: a seal step is applied by the service")
        if step.kind != "seal" and not step.actors:
            raise errors.InvalidCircuit(f"step {index}: a {step.kind} step needs actors")
        keys = [actor.key for actor in step.actors]
        if len(keys) != len(set(keys)):
            raise errors.InvalidCircuit(f"step {index}: an actor is listed twice")


@dataclass(frozen=True)
class Agent:
    """The person acting, as their access token describes them."""

    user_id: str
    desks: frozenset[str] = frozenset()
    substantial: bool = False
    #: Their name as identity gives it (the token's `name` claim), for the signatures they
    #: make; None when the token carries none.
    name: str | None = None


@dataclass(frozen=True)
class Delegation:
    """`delegate` may act for `delegator` (and the `desks` the delegator holds) in a period."""

    id: str
    delegator: str
    delegate: str
    desks: frozenset[str]
    starts_at: datetime
    ends_at: datetime
    revoked: bool = False

    def active(self, now: datetime) -> bool:
        return not self.revoked and self.starts_at <= now < self.ends_at


@dataclass(frozen=True)
class Authority:
    """Which slot of the step an agent fills, and for whom when by delegation."""

    slot: str
    on_behalf_of: str | None


def authority_over(
    step: StepSpec,
    agent: Agent,
    delegations: Iterable[Delegation],
    now: datetime,
    taken: Iterable[str] = (),
) -> Authority | None:
    """The first free slot of `step` the agent may fill: themself first, then by delegation."""
    free = [actor for actor in step.actors if actor.key not in set(taken)]
    for actor in free:
        if _direct(actor, agent):
            return Authority(actor.key, None)
    active = [d for d in delegations if d.delegate == agent.user_id and d.active(now)]
    for actor in free:
        for delegation in active:
            if actor.kind == "user" and actor.id == delegation.delegator:
                return Authority(actor.key, delegation.delegator)
            if actor.kind == "desk" and actor.id in delegation.desks:
                return Authority(actor.key, delegation.delegator)
    return None


def _direct(actor: ActorRef, agent: Agent) -> bool:
    if actor.kind == "user":
        return actor.id == agent.user_id
    return actor.id in agent.desks


@dataclass(frozen=True)
class StepAction:
    step: int
    kind: Literal["approved", "signed"]
    actor: str
    slot: str
    on_behalf_of: str | None
    comment: str
    at: datetime


@dataclass
class Folder:
    id: str
    tenant: str
    status: Status = "draft"
    #: False until the folder is drafted or submitted: such a folder does not exist.
    exists: bool = False
    draft_circuit_id: str | None = None
    circuit: CircuitSpec | None = None
    title: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    submitted_by: str = ""
    submitted_at: datetime | None = None
    due_at: datetime | None = None
    document: DocumentRef | None = None
    original: DocumentRef | None = None
    attachments: tuple[DocumentRef, ...] = ()
    current_step: int = 0
    #: The step the last `step.assigned` announced (-1: none yet).
    assigned_step: int = -1
    actions: list[StepAction] = field(default_factory=list)
    signatures: list[SignatureInfo] = field(default_factory=list)
    rejection: StepRejected | None = None
    completed: bool = False
    reminded: bool = False
    overdue: bool = False
    pending: list[Event] = field(default_factory=list)

    # -- rebuilding -----------------------------------------------------------------------
    @classmethod
    def rebuild(cls, folder_id: str, tenant: str, events: Iterable[Event]) -> Folder:
        folder = cls(folder_id, tenant)
        for event in events:
            folder.apply(event)
        return folder

    def apply(self, event: Event) -> None:
        match event:
            case FolderDrafted():
                self.exists = True
                self.title = event.title
                self.draft_circuit_id = event.circuit_id
                self.metadata = dict(event.metadata)
                self.submitted_by = event.created_by
                self.due_at = event.due_at
                self.document = self.original = event.document
                self.attachments = event.attachments
            case FolderSubmitted():
                self.exists = True
                self.status = "submitted"
                self.circuit = event.circuit
                self.title = event.title
                self.metadata = dict(event.metadata)
                self.submitted_by = event.submitted_by
                self.submitted_at = event.submitted_at
                self.due_at = event.due_at
                self.document = self.original = event.document
                self.attachments = event.attachments
            case StepAssigned():
                self.status = "in_progress"
                self.assigned_step = event.step
            case StepApproved():
                self.actions.append(
                    StepAction(
                        event.step,
                        "approved",
                        event.actor,
                        event.slot,
                        event.on_behalf_of,
                        event.comment,
                        event.at,
                    )
                )
                self._advance_if_done()
            case StepSigned():
                self.actions.append(
                    StepAction(
                        event.step,
                        "signed",
                        event.actor,
                        event.slot,
                        event.on_behalf_of,
                        event.comment,
                        event.at,
                    )
                )
                self.document = event.document
                self.signatures.append(event.signature)
                self._advance_if_done()
            case StepRejected():
                self.rejection = event
            case FolderRejected():
                self.status = "rejected"
            case FolderWithdrawn():
                self.status = "withdrawn"
            case FolderCompleted():
                self.status = "signed"
                self.completed = True
            case ReminderDue():
                self.reminded = True
            case FolderOverdue():
                self.overdue = True
            case _:
                pass

    def _record(self, event: Event) -> None:
        self.apply(event)
        self.pending.append(event)

    def _advance_if_done(self) -> None:
        step = self.step_spec(self.current_step)
        if step is None:
            return
        done = {a.slot for a in self.actions if a.step == self.current_step}
        # "any" (and a seal, which has no actor slots) is done after one action.
        if (step.mode == "any" and done) or (step.mode == "all" and len(done) >= len(step.actors)):
            self.current_step += 1

    # -- reading --------------------------------------------------------------------------
    @property
    def steps(self) -> tuple[StepSpec, ...]:
        return self.circuit.steps if self.circuit else ()

    def step_spec(self, index: int) -> StepSpec | None:
        return self.steps[index] if 0 <= index < len(self.steps) else None

    @property
    def is_closed(self) -> bool:
        return self.status in TERMINAL

    @property
    def all_steps_done(self) -> bool:
        return self.circuit is not None and self.current_step >= len(self.steps)

    def taken_slots(self, step: int) -> set[str]:
        return {a.slot for a in self.actions if a.step == step}

    def waiting_for(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Users and desks the current step still waits for."""
        step = self.step_spec(self.current_step)
        if step is None or self.is_closed:
            return (), ()
        taken = self.taken_slots(self.current_step)
        free = [a for a in step.actors if a.key not in taken]
        return (
            tuple(a.id for a in free if a.kind == "user"),
            tuple(a.id for a in free if a.kind == "desk"),
        )

    @property
    def awaits_seal(self) -> bool:
        step = self.step_spec(self.current_step)
        return self.status == "in_progress" and step is not None and step.kind == "seal"

    # -- commands -------------------------------------------------------------------------
    def draft(
        self,
        *,
        title: str,
        circuit_id: str,
        document: DocumentRef,
        attachments: Sequence[DocumentRef],
        metadata: dict[str, str],
        created_by: str,
        due_at: datetime | None,
        now: datetime,
    ) -> None:
        if self.exists:
            raise errors.AlreadySubmitted(f"folder {self.id} already exists")
        self._record(
            FolderDrafted(
                folder_id=self.id,
                title=title,
                circuit_id=circuit_id,
                document=document,
                attachments=tuple(attachments),
                metadata=metadata,
                created_by=created_by,
                due_at=due_at,
                created_at=now,
            )
        )

    def submit_draft(
        self,
        circuit: CircuitSpec,
        by: str,
        now: datetime,
        submitter_kind: Literal["agent", "service", "citizen"] = "agent",
    ) -> None:
        """Send a drafted folder into its circuit (the circuit as it is now)."""
        if not self.exists:
            raise errors.FolderNotFound(f"folder {self.id} does not exist")
        if self.status != "draft":
            raise errors.AlreadySubmitted(f"folder {self.id} was already submitted")
        if by != self.submitted_by:
            raise errors.NotAnActor("only the folder's author can submit their draft")
        assert self.document is not None
        self.submit(
            title=self.title,
            circuit=circuit,
            document=self.document,
            attachments=self.attachments,
            metadata=self.metadata,
            submitted_by=by,
            submitter_kind=submitter_kind,
            due_at=self.due_at,
            now=now,
        )

    def submit(
        self,
        *,
        title: str,
        circuit: CircuitSpec,
        document: DocumentRef,
        attachments: Sequence[DocumentRef],
        metadata: dict[str, str],
        submitted_by: str,
        submitter_kind: Literal["agent", "service", "citizen"],
        due_at: datetime | None,
        now: datetime,
    ) -> None:
        if self.status != "draft":
            raise errors.AlreadySubmitted(f"folder {self.id} was already submitted")
        validate_circuit(circuit)
        if due_at is not None and due_at <= now:
            raise errors.ParapheurError("the due date must be in the future")
        self._record(
            FolderSubmitted(
                folder_id=self.id,
                title=title,
                circuit=circuit,
                document=document,
                attachments=tuple(attachments),
                metadata=metadata,
                submitted_by=submitted_by,
                submitter_kind=submitter_kind,
                due_at=due_at,
                submitted_at=now,
            )
        )
        self.catch_up(now)

    def authorise(
        self,
        step: int,
        action: Literal["approve", "sign", "reject"],
        agent: Agent,
        delegations: Iterable[Delegation],
        now: datetime,
    ) -> Authority:
        """Check that `agent` may do `action` on `step` now; nothing is recorded."""
        self._ensure_open()
        if step != self.current_step:
            if step < self.current_step and any(
                a.step == step and a.actor == agent.user_id for a in self.actions
            ):
                raise errors.AlreadyActed(f"you already acted on step {step}")
            raise errors.StepNotCurrent(
                f"step {step} is not the current step (the folder is at step {self.current_step})"
            )
        spec = self.step_spec(step)
        assert spec is not None  # open and current: the step exists
        if spec.kind == "seal":
            raise errors.WrongAction("a seal step is applied by the service, not by an agent")
        if action == "approve" and spec.kind != "visa":
            raise errors.WrongAction(f"step {step} is a {spec.kind} step: sign it, not approve")
        if action == "sign" and spec.kind != "signature":
            raise errors.WrongAction(f"step {step} is a {spec.kind} step: approve it, not sign")
        if any(a.step == step and a.actor == agent.user_id for a in self.actions):
            raise errors.AlreadyActed(f"you already acted on step {step}")
        authority = authority_over(spec, agent, delegations, now, self.taken_slots(step))
        if authority is None:
            raise errors.NotAnActor(f"you are not an actor of step {step}, nor their delegate")
        if action == "sign" and not agent.substantial:
            raise errors.StepUpRequired(
                "signing requires a session at the substantial assurance level; "
                "authenticate again with a second factor"
            )
        return authority

    def approve(
        self,
        step: int,
        agent: Agent,
        delegations: Iterable[Delegation],
        comment: str,
        now: datetime,
    ) -> None:
        authority = self.authorise(step, "approve", agent, delegations, now)
        self._record(
            StepApproved(
                step=step,
                actor=agent.user_id,
                slot=authority.slot,
                on_behalf_of=authority.on_behalf_of,
                comment=comment,
                at=now,
            )
        )
        self.catch_up(now)

    def sign(
        self,
        step: int,
        agent: Agent,
        delegations: Iterable[Delegation],
        comment: str,
        document: DocumentRef,
        signature: SignatureInfo,
        now: datetime,
    ) -> None:
        authority = self.authorise(step, "sign", agent, delegations, now)
        self._record(
            StepSigned(
                step=step,
                actor=agent.user_id,
                slot=authority.slot,
                on_behalf_of=authority.on_behalf_of,
                comment=comment,
                document=document,
                signature=signature,
                at=now,
            )
        )
        self.catch_up(now)

    def seal(
        self, step: int, document: DocumentRef, signature: SignatureInfo, now: datetime
    ) -> None:
        self._ensure_open()
        if step != self.current_step or not self.awaits_seal:
            raise errors.StepNotCurrent(f"step {step} is not a seal step waiting to be applied")
        self._record(
            StepSigned(
                step=step,
                actor=SYSTEM_ACTOR,
                slot="seal",
                document=document,
                signature=signature,
                at=now,
            )
        )
        self.catch_up(now)

    def reject(
        self,
        step: int,
        agent: Agent,
        delegations: Iterable[Delegation],
        reason: str,
        now: datetime,
    ) -> None:
        if not reason.strip():
            raise errors.ParapheurError("a rejection needs a reason")
        authority = self.authorise(step, "reject", agent, delegations, now)
        self._record(
            StepRejected(
                step=step,
                actor=agent.user_id,
                on_behalf_of=authority.on_behalf_of,
                reason=reason,
                at=now,
            )
        )
        self.catch_up(now)

    def take_back(self, by: str, reason: str, now: datetime) -> None:
        """The submitter's "droit de remords": only while the current step is untouched."""
        self._ensure_open()
        if by != self.submitted_by:
            raise errors.TakeBackRefused("only the submitter can take a folder back")
        if self.taken_slots(self.current_step):
            raise errors.TakeBackRefused(
                f"step {self.current_step} has already been acted on: too late to take it back"
            )
        self._record(FolderWithdrawn(by=by, step=self.current_step, reason=reason, at=now))

    def remind(self, now: datetime) -> bool:
        """Record a reminder once, if the folder still waits; True when one was recorded."""
        if self.is_closed or self.reminded or self.due_at is None or self.circuit is None:
            return False
        users, desks = self.waiting_for()
        self._record(
            ReminderDue(step=self.current_step, due_at=self.due_at, users=users, desks=desks)
        )
        return True

    def mark_overdue(self, now: datetime) -> bool:
        if self.is_closed or self.overdue or self.due_at is None or now < self.due_at:
            return False
        users, desks = self.waiting_for()
        self._record(
            FolderOverdue(step=self.current_step, due_at=self.due_at, users=users, desks=desks)
        )
        return True

    def catch_up(self, now: datetime) -> None:
        """Record the follow-ups the decisive events imply and that are not recorded yet."""
        if self.circuit is None or self.is_closed:
            return
        if self.rejection is not None:
            self._record(
                FolderRejected(
                    step=self.rejection.step,
                    by=self.rejection.actor,
                    reason=self.rejection.reason,
                    returned_to=self.submitted_by,
                )
            )
            return
        if self.all_steps_done:
            assert self.document is not None
            self._record(
                FolderCompleted(
                    folder_id=self.id,
                    title=self.title,
                    circuit_id=self.circuit.id,
                    circuit_name=self.circuit.name,
                    document=self.document,
                    signatures=tuple(self.signatures),
                    metadata=self.metadata,
                    submitted_by=self.submitted_by,
                    completed_at=now,
                )
            )
            return
        if self.assigned_step < self.current_step:
            spec = self.steps[self.current_step]
            self._record(
                StepAssigned(
                    step=self.current_step,
                    kind=spec.kind,
                    mode=spec.mode,
                    users=tuple(a.id for a in spec.actors if a.kind == "user"),
                    desks=tuple(a.id for a in spec.actors if a.kind == "desk"),
                    due_at=self.due_at,
                )
            )

    def _ensure_open(self) -> None:
        if not self.exists:
            raise errors.FolderNotFound(f"folder {self.id} does not exist")
        if self.status == "draft":
            raise errors.NotSubmitted(f"folder {self.id} is a draft: submit it first")
        if self.is_closed:
            raise errors.FolderClosed(
                f"folder {self.id} is {self.status}: nothing more can be done"
            )

    def collect(self) -> list[Event]:
        events, self.pending = self.pending, []
        return events
