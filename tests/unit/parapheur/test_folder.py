"""The folder's rules: who acts when, what each action records, and what is refused."""

from __future__ import annotations

from datetime import timedelta

import pytest

from parapheur.domain import errors
from parapheur.domain.events import (
    ActorRef,
    FolderCompleted,
    FolderRejected,
    FolderSubmitted,
    FolderWithdrawn,
    StepApproved,
    StepAssigned,
    StepRejected,
    StepSigned,
    StepSpec,
)
from parapheur.domain.model import Agent, Delegation, Folder, validate_circuit

from .builders import ALICE, BOB, CAROL, NOW, VISA_SIGN_SEAL, circuit, doc, signature, submitted


def test_submitting_records_the_folder_and_assigns_the_first_step() -> None:
    folder = submitted()
    events = folder.collect()
    assert [type(e) for e in events] == [FolderSubmitted, StepAssigned]
    assigned = events[1]
    assert isinstance(assigned, StepAssigned)
    assert (assigned.step, assigned.desks, assigned.users) == (0, ("secretariat",), ())
    assert folder.status == "in_progress"


def test_a_full_circuit_ends_signed_with_the_final_document() -> None:
    folder = submitted()
    folder.approve(0, ALICE, [], "ok", NOW)
    folder.sign(1, BOB, [], "lu et approuvé", doc(1), signature(1), NOW)
    assert folder.awaits_seal
    folder.seal(2, doc(2), signature(2, "seal", "seal"), NOW)
    events = folder.collect()
    completed = events[-1]
    assert isinstance(completed, FolderCompleted)
    assert completed.document == doc(2)
    assert [s.step for s in completed.signatures] == [1, 2]
    assert folder.status == "signed"
    assert folder.is_closed


def test_only_the_current_steps_actors_may_act() -> None:
    folder = submitted()
    with pytest.raises(errors.NotAnActor):
        folder.approve(0, CAROL, [], "", NOW)
    with pytest.raises(errors.StepNotCurrent):
        folder.sign(1, BOB, [], "", doc(1), signature(1), NOW)
    assert folder.current_step == 0


def test_acting_twice_is_refused() -> None:
    folder = submitted()
    folder.approve(0, ALICE, [], "", NOW)
    with pytest.raises(errors.AlreadyActed):
        folder.approve(0, ALICE, [], "", NOW)


def test_signing_needs_a_substantial_session() -> None:
    folder = submitted()
    folder.approve(0, ALICE, [], "", NOW)
    with pytest.raises(errors.StepUpRequired):
        folder.sign(1, Agent("bob"), [], "", doc(1), signature(1), NOW)


def test_a_visa_is_approved_not_signed_and_a_seal_is_not_applied_by_hand() -> None:
    folder = submitted()
    with pytest.raises(errors.WrongAction):
        folder.sign(
            0, Agent("alice", frozenset({"secretariat"}), True), [], "", doc(1), signature(0), NOW
        )
    folder.approve(0, ALICE, [], "", NOW)
    folder.sign(1, BOB, [], "", doc(1), signature(1), NOW)
    with pytest.raises(errors.WrongAction):
        folder.approve(2, BOB, [], "", NOW)


def test_a_delegate_acts_for_the_delegator_and_it_is_recorded() -> None:
    folder = submitted()
    folder.approve(0, ALICE, [], "", NOW)
    away = Delegation(
        "d1", "bob", "carol", frozenset(), NOW - timedelta(days=1), NOW + timedelta(days=1)
    )
    folder.sign(1, CAROL, [away], "pour le maire", doc(1), signature(1, "carol"), NOW)
    signed = next(e for e in folder.collect() if isinstance(e, StepSigned))
    assert (signed.actor, signed.on_behalf_of) == ("carol", "bob")


def test_a_delegation_outside_its_period_gives_no_right() -> None:
    folder = submitted()
    later = Delegation(
        "d1",
        "alice",
        "carol",
        frozenset({"secretariat"}),
        NOW + timedelta(days=1),
        NOW + timedelta(days=2),
    )
    with pytest.raises(errors.NotAnActor):
        folder.approve(0, CAROL, [later], "", NOW)


def test_a_desk_delegation_covers_the_desk() -> None:
    folder = submitted()
    holiday = Delegation(
        "d1", "alice", "carol", frozenset({"secretariat"}), NOW, NOW + timedelta(days=7)
    )
    folder.approve(0, CAROL, [holiday], "", NOW)
    approved = next(e for e in folder.collect() if isinstance(e, StepApproved))
    assert approved.on_behalf_of == "alice"


def test_an_all_of_step_waits_for_every_actor() -> None:
    spec = circuit(
        StepSpec(
            kind="visa",
            mode="all",
            actors=(ActorRef(kind="user", id="alice"), ActorRef(kind="user", id="carol")),
        )
    )
    folder = submitted(spec)
    folder.approve(0, ALICE, [], "", NOW)
    assert folder.current_step == 0
    assert folder.waiting_for() == (("carol",), ())
    folder.approve(0, CAROL, [], "", NOW)
    assert folder.status == "signed"


def test_a_rejection_returns_the_folder_to_its_submitter() -> None:
    folder = submitted()
    with pytest.raises(errors.ParapheurError):
        folder.reject(0, ALICE, [], "  ", NOW)
    folder.reject(0, ALICE, [], "montant erroné", NOW)
    events = folder.collect()
    assert [type(e) for e in events][-2:] == [StepRejected, FolderRejected]
    rejected = events[-1]
    assert isinstance(rejected, FolderRejected)
    assert (rejected.returned_to, rejected.reason) == ("sam", "montant erroné")
    with pytest.raises(errors.FolderClosed):
        folder.approve(0, ALICE, [], "", NOW)


def test_the_submitter_takes_back_an_untouched_step_only() -> None:
    folder = submitted()
    with pytest.raises(errors.TakeBackRefused):
        folder.take_back("alice", "", NOW)
    folder.take_back("sam", "oubli d'une pièce", NOW)
    assert isinstance(folder.collect()[-1], FolderWithdrawn)
    with pytest.raises(errors.FolderClosed):
        folder.approve(0, ALICE, [], "", NOW)


def test_take_back_is_refused_once_the_current_step_is_touched() -> None:
    spec = circuit(
        StepSpec(
            kind="visa",
            mode="all",
            actors=(ActorRef(kind="user", id="alice"), ActorRef(kind="user", id="carol")),
        )
    )
    folder = submitted(spec)
    folder.approve(0, ALICE, [], "", NOW)
    with pytest.raises(errors.TakeBackRefused):
        folder.take_back("sam", "", NOW)


def test_reminder_and_overdue_are_recorded_once_while_open() -> None:
    folder = submitted(due=timedelta(days=2))
    assert folder.remind(NOW)
    assert not folder.remind(NOW)
    assert not folder.mark_overdue(NOW)
    assert folder.mark_overdue(NOW + timedelta(days=3))
    assert not folder.mark_overdue(NOW + timedelta(days=4))


def test_a_folder_is_rebuilt_from_its_events() -> None:
    folder = submitted()
    folder.approve(0, ALICE, [], "", NOW)
    events = folder.collect()
    again = Folder.rebuild("f1", "bordeaux", events)
    assert (again.status, again.current_step, again.assigned_step) == ("in_progress", 1, 1)


def test_a_missing_follow_up_is_recorded_by_the_next_command() -> None:
    folder = submitted()
    folder.approve(0, ALICE, [], "", NOW)
    events = folder.collect()
    # A crash after step.approved was stored but before step.assigned was.
    crashed = Folder.rebuild("f1", "bordeaux", events[:-1])
    crashed.catch_up(NOW)
    assert isinstance(crashed.collect()[-1], StepAssigned)


@pytest.mark.parametrize(
    "steps",
    [
        (),
        (StepSpec(kind="visa"),),
        (StepSpec(kind="seal", actors=(ActorRef(kind="user", id="x"),)),),
    ],
)
def test_invalid_circuits_are_refused(steps: tuple[StepSpec, ...]) -> None:
    with pytest.raises(errors.InvalidCircuit):
        validate_circuit(circuit(*steps))


def test_submitting_twice_is_refused() -> None:
    folder = submitted()
    with pytest.raises(errors.AlreadySubmitted):
        folder.submit(
            title="x",
            circuit=VISA_SIGN_SEAL,
            document=doc(),
            attachments=(),
            metadata={},
            submitted_by="sam",
            submitter_kind="agent",
            due_at=None,
            now=NOW,
        )


def drafted() -> Folder:
    folder = Folder("f1", "bordeaux")
    folder.draft(
        title="Marché",
        circuit_id="arrete",
        document=doc(),
        attachments=(),
        metadata={},
        created_by="sam",
        due_at=None,
        now=NOW,
    )
    return folder


def test_a_draft_exists_but_is_not_in_its_circuit_until_submitted() -> None:
    folder = drafted()
    assert (folder.exists, folder.status) == (True, "draft")
    with pytest.raises(errors.NotSubmitted):
        folder.approve(0, ALICE, [], "", NOW)
    with pytest.raises(errors.NotAnActor):
        folder.submit_draft(VISA_SIGN_SEAL, "alice", NOW)
    folder.submit_draft(VISA_SIGN_SEAL, "sam", NOW)
    assert folder.status == "in_progress"
    assert [type(e).__name__ for e in folder.collect()] == [
        "FolderDrafted",
        "FolderSubmitted",
        "StepAssigned",
    ]
    with pytest.raises(errors.AlreadySubmitted):
        folder.submit_draft(VISA_SIGN_SEAL, "sam", NOW)


def test_a_folder_never_drafted_nor_submitted_does_not_exist() -> None:
    with pytest.raises(errors.FolderNotFound):
        Folder("nope", "bordeaux").approve(0, ALICE, [], "", NOW)
