"""The tenant directory: the metropolis and its fourteen communes, from one file."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from mutualis_kernel.tenants import UnknownTenant, default_tenants, load_tenants


def test_the_metropolis_and_its_fourteen_communes_are_declared() -> None:
    tenants = default_tenants()
    assert len(tenants.tenants) == 15
    assert tenants.metropolis.slug == "metropole"
    assert tenants.get("merignac").name == "Mérignac"
    assert tenants.get("le-taillan-medoc").insee == "33519"
    assert sum(1 for t in tenants.tenants if t.kind == "commune") == 14


def test_an_unknown_commune_is_an_error_that_names_it() -> None:
    with pytest.raises(UnknownTenant, match="atlantis"):
        default_tenants().get("atlantis")


def test_adding_a_commune_is_one_line(tmp_path: Path) -> None:
    shipped = Path(__file__).parents[3] / "libs/mutualis_kernel/tenants.yaml"
    extended = shipped.read_text() + (
        '  - {slug: artigues-pres-bordeaux, insee: "33013", name: "Artigues-près-Bordeaux", '
        "kind: commune}\n"
    )
    path = tmp_path / "tenants.yaml"
    path.write_text(extended)
    assert "artigues-pres-bordeaux" in load_tenants(path)


def test_slugs_must_be_subject_tokens(tmp_path: Path) -> None:
    path = tmp_path / "tenants.yaml"
    path.write_text("version: 1\ntenants:\n  - {slug: 'Le Bouscat', name: x, kind: commune}\n")
    with pytest.raises(ValidationError):
        load_tenants(path)


def test_a_deployment_points_at_its_own_tenants_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "tenants.yaml"
    path.write_text(
        "version: 7\ntenants:\n  - {slug: metropole, name: M, kind: metropolis}\n"
        "  - {slug: bordeaux, name: Bordeaux, kind: commune}\n"
    )
    monkeypatch.setenv("MUTUALIS_TENANTS_FILE", str(path))
    default_tenants.cache_clear()
    try:
        assert default_tenants().version == 7
        assert default_tenants().slugs == ("metropole", "bordeaux")
    finally:
        monkeypatch.delenv("MUTUALIS_TENANTS_FILE")
        default_tenants.cache_clear()
