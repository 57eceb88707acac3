"""The SEDA schemas are read from where setup installed them, never fetched at run time."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from archive.adapters.seda_schemas import (
    SedaSchemasMissing,
    default_schema_dir,
    schema_dir,
    validate,
)


def test_missing_schemas_are_an_error_naming_the_make_target(tmp_path: Path) -> None:
    with pytest.raises(SedaSchemasMissing) as raised:
        schema_dir(tmp_path)
    assert "make seda-schemas" in raised.value.detail
    assert str(tmp_path) in raised.value.detail
    assert raised.value.status == 503
    assert list(tmp_path.iterdir()) == []  # nothing was downloaded or written


def test_validating_without_schemas_refuses_instead_of_fetching(tmp_path: Path) -> None:
    with pytest.raises(SedaSchemasMissing):
        validate(b"<ArchiveTransfer/>", tmp_path / "absent")
    assert not (tmp_path / "absent").exists()


def test_the_default_place_is_inside_the_running_environment() -> None:
    assert default_schema_dir() == Path(sys.prefix) / "share" / "mutualis" / "seda"
