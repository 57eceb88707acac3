"""The committed contract files: writing them from the code, and checking they still match.

Three files in the docs directory:
- `asyncapi.yaml`: generated whole by `build_asyncapi`;
- `event-schemas.json`: the snapshot of every event type the code declares, against which
  `breaking_changes` judges the next change (so writing it refuses to record a breaking change);
- `events.md`: hand-written prose, with a generated table of event types between the markers
  `<!-- events:begin -->` and `<!-- events:end -->`.

`write_contract` and `check_contract` are plain functions so the CLI and `make` call the same
code; `python -m mutualis_kernel.contract --write|--check` wraps them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mutualis_kernel.contract.asyncapi import (
    build_asyncapi,
    consumers_of,
    render_yaml,
    subject_pattern,
)
from mutualis_kernel.contract.compatibility import breaking_changes, snapshot
from mutualis_kernel.events.registry import EventCatalog, EventTypeInfo
from mutualis_kernel.events.registry import catalog as process_catalog
from mutualis_kernel.service import ServiceManifest, installed_manifests

ASYNCAPI_FILE = "asyncapi.yaml"
SNAPSHOT_FILE = "event-schemas.json"
EVENTS_FILE = "events.md"
BEGIN_MARKER = "<!-- events:begin -->"
END_MARKER = "<!-- events:end -->"
WRITE_COMMAND = "python -m mutualis_kernel.contract --write"


class ContractError(Exception):
    """The contract files cannot be written or read as they are."""


class BreakingChanges(ContractError):
    """The code changed a published event type in a way its readers would refuse."""

    def __init__(self, changes: Sequence[str]) -> None:
        super().__init__(
            "breaking changes to published event types:\n"
            + "\n".join(f"  - {change}" for change in changes)
            + "\nbump the version: @domain_event(..., version=N+1), keeping version N declared"
        )
        self.changes = list(changes)


@dataclass(frozen=True)
class Contract:
    """What the contract is generated from: the event catalog and the service manifests."""

    catalog: EventCatalog
    manifests: tuple[ServiceManifest, ...]

    @classmethod
    def installed(cls) -> Contract:
        """The process catalog after importing every installed service's event modules."""
        manifests = installed_manifests()  # imports each manifest's event modules
        return cls(process_catalog, tuple(manifests))


def render_asyncapi(contract: Contract) -> str:
    return render_yaml(build_asyncapi(contract.catalog, contract.manifests))


def render_snapshot(schemas: dict[str, dict[str, Any]]) -> str:
    return json.dumps(schemas, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def render_events_table(contract: Contract) -> str:
    """The Markdown between the markers of events.md: one row per event type."""
    events = list(contract.catalog)
    if not events:
        return (
            "_No event type is declared yet: each service adds its own when it arrives, "
            f"and `{WRITE_COMMAND}` lists them here._"
        )
    rows = [
        "| type | subject | producer | consumers | description |",
        "|---|---|---|---|---|",
    ]
    for info in events:
        readers = [f"{c.service} (`{c.durable}`)" for c in consumers_of(info, contract.manifests)]
        rows.append(
            f"| `{info.type_name}` | `{subject_pattern(info)}` | {info.service} | "
            f"{', '.join(readers) or '—'} | {_one_line(info)} |"
        )
    return "\n".join(rows)


def write_contract(
    docs_dir: Path, contract: Contract | None = None, *, allow_breaking: bool = False
) -> list[Path]:
    """Regenerate the contract files in `docs_dir`; return those whose content changed.

    Refuses (`BreakingChanges`) when the code breaks a type of the committed snapshot, unless
    `allow_breaking` (only for a type never released anywhere). `events.md` is updated when it
    exists; it must then hold the markers.
    """
    contract = contract or Contract.installed()
    current = snapshot(contract.catalog)
    committed = _read_snapshot(docs_dir / SNAPSHOT_FILE)
    if committed is not None and not allow_breaking:
        changes = breaking_changes(committed, current)
        if changes:
            raise BreakingChanges(changes)
    outputs = {
        docs_dir / ASYNCAPI_FILE: render_asyncapi(contract),
        docs_dir / SNAPSHOT_FILE: render_snapshot(current),
    }
    events_md = docs_dir / EVENTS_FILE
    if events_md.exists():
        outputs[events_md] = _with_table(events_md, render_events_table(contract))
    changed = []
    docs_dir.mkdir(parents=True, exist_ok=True)
    for path, text in outputs.items():
        if not path.exists() or path.read_text("utf-8") != text:
            path.write_text(text, "utf-8")
            changed.append(path)
    return changed


def check_contract(docs_dir: Path, contract: Contract | None = None) -> list[str]:
    """What is wrong with the committed contract files, one sentence each; empty if nothing."""
    contract = contract or Contract.installed()
    problems: list[str] = []
    # Through JSON and back, so tuples and lists in schema defaults compare as the file does.
    current = json.loads(render_snapshot(snapshot(contract.catalog)))
    committed = _read_snapshot(docs_dir / SNAPSHOT_FILE)
    if committed is None:
        problems.append(f"{docs_dir / SNAPSHOT_FILE} is missing: run `{WRITE_COMMAND}`")
    else:
        changes = breaking_changes(committed, current)
        if changes:
            problems.append(str(BreakingChanges(changes)))
        elif committed != current:
            problems.append(
                f"{docs_dir / SNAPSHOT_FILE} does not match the declared event types: "
                f"run `{WRITE_COMMAND}` and commit it"
            )
    asyncapi = docs_dir / ASYNCAPI_FILE
    if not asyncapi.exists() or asyncapi.read_text("utf-8") != render_asyncapi(contract):
        problems.append(f"{asyncapi} is stale: run `{WRITE_COMMAND}` and commit it")
    events_md = docs_dir / EVENTS_FILE
    if events_md.exists():
        text = events_md.read_text("utf-8")
        if _with_table(events_md, render_events_table(contract)) != text:
            problems.append(
                f"the event table in {events_md} is stale: run `{WRITE_COMMAND}` and commit it"
            )
    return problems


def _read_snapshot(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text("utf-8"))
    except json.JSONDecodeError as error:
        raise ContractError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise ContractError(f"{path} must map event type names to JSON schemas")
    return data


def _with_table(events_md: Path, table: str) -> str:
    text = events_md.read_text("utf-8")
    start = text.find(BEGIN_MARKER)
    end = text.find(END_MARKER)
    if start < 0 or end < start:
        raise ContractError(f"{events_md} must contain {BEGIN_MARKER} then {END_MARKER}")
    head = text[: start + len(BEGIN_MARKER)]
    return f"{head}\n{table}\n{text[end:]}"


def _one_line(info: EventTypeInfo) -> str:
    description = getattr(info.model, "description", "") or ""
    first = description.strip().split("\n\n")[0]
    return " ".join(first.split()).replace("|", "\\|") or "—"
