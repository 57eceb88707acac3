"""Which payload changes force a new event version, and which do not."""

from __future__ import annotations

import datetime
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from mutualis_kernel.contract import breaking_changes, snapshot
from mutualis_kernel.events import domain_event
from mutualis_kernel.events.registry import Event

from .demo import PrivateCatalog

TYPE = "mutualis.parapheur.folder.submitted.v1"


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def changes(old: type[BaseModel], new: type[BaseModel]) -> list[str]:
    """The breaking changes between two versions of the payload of one event type."""
    return breaking_changes(
        {TYPE: old.model_json_schema(mode="serialization")},
        {TYPE: new.model_json_schema(mode="serialization")},
    )


class Signer(Frozen):
    email: str


class Folder(Frozen):
    title: str
    signers: list[Signer]
    priority: Literal["low", "normal", "high"] = "normal"
    deadline: datetime.date | None = None


def test_an_unchanged_payload_is_compatible() -> None:
    assert changes(Folder, Folder) == []


def test_adding_an_optional_property_is_compatible() -> None:
    class WithNote(Folder):
        note: str | None = None

    assert changes(Folder, WithNote) == []


def test_removing_a_property_is_breaking() -> None:
    class Old(Frozen):
        title: str
        note: str | None = None

    class New(Frozen):
        title: str

    assert changes(Old, New) == [f"{TYPE}: removed property 'note'"]


def test_renaming_a_property_is_breaking_and_reads_as_a_rename() -> None:
    class Old(Frozen):
        title: str

    class New(Frozen):
        label: str

    found = changes(Old, New)
    assert f"{TYPE}: removed property 'title' (renamed to 'label'?)" in found
    assert f"{TYPE}: added required property 'label'" in found


def test_changing_a_property_type_is_breaking() -> None:
    class Old(Frozen):
        count: str

    class New(Frozen):
        count: int

    assert changes(Old, New) == [f"{TYPE}: count: no longer accepts string"]


def test_an_integer_may_become_a_number() -> None:
    class Old(Frozen):
        weight: int

    class New(Frozen):
        weight: float

    assert changes(Old, New) == []


def test_narrowing_an_enum_is_breaking_and_widening_it_is_not() -> None:
    class Narrow(Frozen):
        priority: Literal["low", "normal"] = "normal"

    class Wide(Frozen):
        priority: Literal["low", "normal", "high"] = "normal"

    assert changes(Wide, Narrow) == [f"{TYPE}: priority: enum narrowed: 'high' no longer accepted"]
    assert changes(Narrow, Wide) == []


def test_changing_a_format_is_breaking() -> None:
    class Old(Frozen):
        folder_id: uuid.UUID

    class New(Frozen):
        folder_id: datetime.datetime

    assert changes(Old, New) == [f"{TYPE}: folder_id: format changed from 'uuid' to 'date-time'"]


def test_a_change_inside_a_nested_model_is_breaking_and_located() -> None:
    class NewSigner(Frozen):
        email: int

    class New(Frozen):
        title: str
        signers: list[NewSigner]
        priority: Literal["low", "normal", "high"] = "normal"
        deadline: datetime.date | None = None

    assert changes(Folder, New) == [f"{TYPE}: signers[].email: no longer accepts string"]


def test_renaming_a_nested_model_class_is_not_a_wire_change() -> None:
    class Signatory(Frozen):
        email: str

    class New(Frozen):
        title: str
        signers: list[Signatory]
        priority: Literal["low", "normal", "high"] = "normal"
        deadline: datetime.date | None = None

    assert changes(Folder, New) == []


def test_changing_the_item_type_of_an_array_is_breaking() -> None:
    class Old(Frozen):
        tags: list[str]

    class New(Frozen):
        tags: list[int]

    assert changes(Old, New) == [f"{TYPE}: tags[]: no longer accepts string"]


def test_making_a_property_required_is_breaking() -> None:
    class Old(Frozen):
        note: str = ""

    class New(Frozen):
        note: str

    assert changes(Old, New) == [f"{TYPE}: property 'note' became required"]


def test_adding_a_required_property_is_breaking() -> None:
    class New(Folder):
        desk: str

    assert changes(Folder, New) == [f"{TYPE}: added required property 'desk'"]


def test_refusing_null_where_it_was_accepted_is_breaking() -> None:
    class New(Frozen):
        title: str
        signers: list[Signer]
        priority: Literal["low", "normal", "high"] = "normal"
        deadline: datetime.date = datetime.date(2030, 1, 1)

    assert changes(Folder, New) == [f"{TYPE}: deadline: no longer accepts null"]


def test_tightening_additional_properties_is_breaking() -> None:
    class Open(BaseModel):
        model_config = ConfigDict(extra="allow")
        title: str

    class Closed(BaseModel):
        model_config = ConfigDict(extra="forbid")
        title: str

    assert changes(Open, Closed) == [
        f"{TYPE}: <payload>: additionalProperties tightened: extra properties now refused"
    ]
    assert changes(Closed, Open) == []


def test_constraining_dictionary_values_is_breaking() -> None:
    class Old(Frozen):
        labels: dict[str, Any]

    class New(Frozen):
        labels: dict[str, int]

    assert changes(Old, New) == [
        f"{TYPE}: labels: additionalProperties tightened: values now constrained"
    ]


def test_a_recursive_model_is_compared_without_looping() -> None:
    class Node(Frozen):
        name: str
        children: list[Node] = []
        parent: Node | None = None

    assert changes(Node, Node) == []


def private_catalog(*versions: int) -> dict[str, Any]:
    catalog = PrivateCatalog()
    for version in versions:

        @domain_event(
            "parapheur", "folder.submitted", version=version, aggregate="folder", into=catalog
        )
        class FolderSubmitted(Event):
            title: str

    return snapshot(catalog)


def test_removing_an_event_type_is_breaking() -> None:
    assert breaking_changes(private_catalog(1), {}) == [
        f"removed event type {TYPE}: keep it or publish a new version"
    ]


def test_an_event_type_may_go_once_a_higher_version_exists() -> None:
    assert breaking_changes(private_catalog(1), private_catalog(2)) == []


def test_a_lower_version_does_not_replace_a_removed_one() -> None:
    found = breaking_changes(private_catalog(1, 2), private_catalog(1))
    assert found == [
        "removed event type mutualis.parapheur.folder.submitted.v2: "
        "keep it or publish a new version"
    ]


def test_a_new_event_type_is_compatible() -> None:
    assert breaking_changes({}, private_catalog(1)) == []


def test_the_snapshot_holds_each_declared_type_with_its_payload_schema() -> None:
    schemas = private_catalog(1, 2)
    assert sorted(schemas) == [TYPE, "mutualis.parapheur.folder.submitted.v2"]
    assert schemas[TYPE]["properties"]["title"]["type"] == "string"
    assert schemas[TYPE]["additionalProperties"] is False
