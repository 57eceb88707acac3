"""The published event contract in docs/ matches the code, and the code breaks no reader.

This is the test that fails CI when someone changes an event and forgets
`python -m mutualis_kernel.contract --write`, or changes a published event type without
bumping its version. It runs the real command in a fresh interpreter: the process-wide event
catalog then holds exactly what the installed services declare, and nothing a test module
registered.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
CONTRACT_FILES = ("asyncapi.yaml", "event-schemas.json", "events.md")


def contract_command(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mutualis_kernel.contract", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def docs_copy(tmp_path: Path) -> Path:
    for name in CONTRACT_FILES:
        shutil.copy(DOCS / name, tmp_path / name)
    return tmp_path


def test_the_committed_contract_matches_the_code() -> None:
    result = contract_command("--check")
    assert result.returncode == 0, result.stderr
    assert "up to date" in result.stdout


def test_a_stale_asyncapi_document_fails_with_the_command_to_run(docs_copy: Path) -> None:
    with (docs_copy / "asyncapi.yaml").open("a", encoding="utf-8") as file:
        file.write("# hand edit\n")
    result = contract_command("--check", "--docs-dir", str(docs_copy))
    assert result.returncode == 1
    assert "asyncapi.yaml is stale" in result.stderr
    assert "python -m mutualis_kernel.contract --write" in result.stderr


def test_dropping_a_published_event_type_fails_and_says_how_to_bump(docs_copy: Path) -> None:
    snapshot_file = docs_copy / "event-schemas.json"
    published = json.loads(snapshot_file.read_text("utf-8"))
    published["mutualis.parapheur.folder.teleported.v1"] = {
        "type": "object",
        "properties": {"reason": {"type": "string"}},
    }
    snapshot_file.write_text(json.dumps(published), "utf-8")

    result = contract_command("--check", "--docs-dir", str(docs_copy))
    assert result.returncode == 1
    assert (
        "removed event type mutualis.parapheur.folder.teleported.v1: "
        "keep it or publish a new version"
    ) in result.stderr
    assert "bump the version: @domain_event(..., version=N+1)" in result.stderr

    refused = contract_command("--write", "--docs-dir", str(docs_copy))
    assert refused.returncode == 1
    assert json.loads(snapshot_file.read_text("utf-8")) == published


def test_the_committed_document_is_valid_asyncapi_3() -> None:
    import jsonschema
    import yaml

    schema_file = ROOT / "tests/unit/kernel/contract/asyncapi-3.0.0.schema.json"
    schema = json.loads(schema_file.read_text("utf-8"))
    document = yaml.safe_load((DOCS / "asyncapi.yaml").read_text("utf-8"))
    jsonschema.Draft7Validator(schema).validate(document)
