"""The task board: who sees which folder, filters and pages, pseudonyms, no going backwards."""

from __future__ import annotations

from datetime import timedelta

from parapheur.domain.model import Agent, Delegation, Folder
from parapheur.service_layer.projection import TaskBoard, TaskFilter, pseudonym

from .builders import ALICE, BOB, CAROL, NOW, submitted


def board_with(*folders: Folder) -> TaskBoard:
    board = TaskBoard()
    for version, folder in enumerate(folders, start=1):
        board.update(folder, version)
    return board


def ids(
    board: TaskBoard,
    agent: Agent,
    delegations: list[Delegation] | None = None,
    wanted: TaskFilter | None = None,
    tenant: str = "bordeaux",
) -> list[str]:
    _, items = board.tasks(tenant, agent, delegations or [], NOW, wanted or TaskFilter())
    return [str(item["id"]) for item in items]


def test_a_desk_member_sees_the_folders_waiting_for_their_desk() -> None:
    board = board_with(submitted())
    assert ids(board, ALICE) == ["f1"]
    assert ids(board, BOB) == []


def test_a_delegate_sees_the_delegators_tasks_during_the_delegation() -> None:
    folder = submitted()
    folder.approve(0, ALICE, [], "", NOW)
    board = board_with(folder)
    away = Delegation(
        "d", "bob", "carol", frozenset(), NOW - timedelta(hours=1), NOW + timedelta(days=1)
    )
    assert ids(board, CAROL, [away]) == ["f1"]
    over = Delegation(
        "d", "bob", "carol", frozenset(), NOW - timedelta(days=3), NOW - timedelta(days=1)
    )
    assert ids(board, CAROL, [over]) == []


def test_another_tenant_sees_nothing() -> None:
    board = board_with(submitted())
    assert ids(board, ALICE, tenant="merignac") == []


def test_filters_and_pages() -> None:
    folders = []
    for index in range(5):
        folder = submitted(due=timedelta(days=index + 1))
        folder.id = f"f{index}"
        folders.append(folder)
    board = board_with(*folders)
    total, items = board.tasks("bordeaux", ALICE, [], NOW, TaskFilter(limit=2, offset=2))
    assert total == 5
    assert [i["id"] for i in items] == ["f2", "f3"]  # soonest due first
    assert ids(board, ALICE, wanted=TaskFilter(step_kind="signature")) == []
    assert ids(board, ALICE, wanted=TaskFilter(overdue=True)) == []


def test_an_older_state_never_replaces_a_newer_one() -> None:
    folder = submitted()
    board = board_with(folder)
    folder.approve(0, ALICE, [], "", NOW)
    board.update(folder, 5)
    stale = submitted()
    board.update(stale, 3)
    assert board.view("bordeaux", "f1")["current_step"] == 1  # type: ignore[index]


def test_an_erased_submitter_is_shown_under_a_pseudonym() -> None:
    board = board_with(submitted())
    board.erase("bordeaux", "sam")
    view = board.view("bordeaux", "f1")
    assert view is not None
    assert view["submitted_by"] == pseudonym("sam") != "sam"


def test_an_erased_persons_id_is_pseudonymised_wherever_it_appears_in_recorded_data() -> None:
    board = TaskBoard()
    board.erase("bordeaux", "bob")
    recorded = {
        "actor": "alice",
        "on_behalf_of": "bob",
        "slot": "user:bob",
        "users": ["bob", "carol"],
        "signature": {"signer": "bob", "certificate_subject": "CN=Bob Martin, O=Bordeaux"},
    }
    shown = board.pseudonymised("bordeaux", recorded)
    assert shown == {
        "actor": "alice",
        "on_behalf_of": pseudonym("bob"),
        "slot": f"user:{pseudonym('bob')}",
        "users": [pseudonym("bob"), "carol"],
        "signature": {"signer": pseudonym("bob"), "certificate_subject": pseudonym("bob")},
    }
    assert recorded["on_behalf_of"] == "bob"  # the input is left as it was
    assert board.pseudonymised("merignac", recorded) == recorded  # erasure is per tenant
