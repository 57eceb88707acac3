"""Writing the contract files and catching a stale or broken contract."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mutualis_kernel.contract import BreakingChanges, ContractError, check_contract, write_contract
from mutualis_kernel.contract.documents import BEGIN_MARKER, END_MARKER
from mutualis_kernel.events import domain_event
from mutualis_kernel.events.registry import Event

from .demo import PrivateCatalog, demo_contract

EVENTS_MD = f"# Events\n\nProse.\n\n{BEGIN_MARKER}\nold table\n{END_MARKER}\n\nMore prose.\n"


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    (tmp_path / "events.md").write_text(EVENTS_MD, "utf-8")
    return tmp_path


def changed_contract(title_type: type) -> PrivateCatalog:
    catalog = PrivateCatalog()

    @domain_event("parapheur", "folder.submitted", aggregate="folder", into=catalog)
    class FolderSubmitted(Event):
        title: title_type  # type: ignore[valid-type]

    return catalog


def test_written_files_pass_the_check(docs: Path) -> None:
    written = write_contract(docs, demo_contract())
    assert sorted(p.name for p in written) == ["asyncapi.yaml", "event-schemas.json", "events.md"]
    assert check_contract(docs, demo_contract()) == []
    assert write_contract(docs, demo_contract()) == []  # nothing left to change


def test_the_snapshot_lists_every_declared_type(docs: Path) -> None:
    write_contract(docs, demo_contract())
    schemas = json.loads((docs / "event-schemas.json").read_text("utf-8"))
    assert sorted(schemas) == [
        "mutualis.parapheur.folder.submitted.v1",
        "mutualis.parapheur.step.assigned.v1",
    ]


def test_the_event_table_is_generated_between_the_markers_only(docs: Path) -> None:
    write_contract(docs, demo_contract())
    text = (docs / "events.md").read_text("utf-8")
    assert text.startswith("# Events\n\nProse.\n")
    assert text.endswith(f"{END_MARKER}\n\nMore prose.\n")
    assert "old table" not in text
    assert (
        "| `mutualis.parapheur.step.assigned.v1` | `evt.parapheur.*.folder.*.step.assigned` "
        "| parapheur | notifications (`notifications-steps`) |"
    ) in text


def test_an_empty_catalog_writes_a_contract_with_no_event(docs: Path) -> None:
    write_contract(docs, demo_contract(PrivateCatalog()))
    assert json.loads((docs / "event-schemas.json").read_text("utf-8")) == {}
    assert "No event type is declared yet" in (docs / "events.md").read_text("utf-8")
    assert check_contract(docs, demo_contract(PrivateCatalog())) == []


def test_a_hand_edited_asyncapi_file_is_stale(docs: Path) -> None:
    write_contract(docs, demo_contract())
    with (docs / "asyncapi.yaml").open("a", encoding="utf-8") as file:
        file.write("# edited\n")
    [problem] = check_contract(docs, demo_contract())
    assert "asyncapi.yaml is stale: run `python -m mutualis_kernel.contract --write`" in problem


def test_a_new_event_type_makes_the_files_stale_but_breaks_nothing(docs: Path) -> None:
    write_contract(docs, demo_contract(PrivateCatalog()))
    problems = check_contract(docs, demo_contract())
    assert len(problems) == 3
    assert not any(p.startswith("breaking changes") for p in problems)


def test_a_breaking_change_fails_the_check_with_the_way_out(docs: Path) -> None:
    write_contract(docs, demo_contract(changed_contract(str)))
    problems = check_contract(docs, demo_contract(changed_contract(int)))
    breaking = [p for p in problems if p.startswith("breaking changes")]
    assert len(breaking) == 1
    assert "mutualis.parapheur.folder.submitted.v1: title: no longer accepts string" in breaking[0]
    assert "bump the version: @domain_event(..., version=N+1)" in breaking[0]


def test_writing_refuses_to_record_a_breaking_change(docs: Path) -> None:
    write_contract(docs, demo_contract(changed_contract(str)))
    before = (docs / "event-schemas.json").read_text("utf-8")
    with pytest.raises(BreakingChanges) as raised:
        write_contract(docs, demo_contract(changed_contract(int)))
    assert raised.value.changes == [
        "mutualis.parapheur.folder.submitted.v1: title: no longer accepts string"
    ]
    assert (docs / "event-schemas.json").read_text("utf-8") == before


def test_a_breaking_change_can_be_recorded_on_purpose(docs: Path) -> None:
    write_contract(docs, demo_contract(changed_contract(str)))
    write_contract(docs, demo_contract(changed_contract(int)), allow_breaking=True)
    assert check_contract(docs, demo_contract(changed_contract(int))) == []


def test_events_md_without_markers_is_refused(tmp_path: Path) -> None:
    (tmp_path / "events.md").write_text("# Events\n", "utf-8")
    with pytest.raises(ContractError, match="events:begin"):
        write_contract(tmp_path, demo_contract())
