"""Disposal (refused under hold and for permanent records, certificate kept) and SEDA 2.2
export that validates against the official XSD and imports into another tenant identically."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from lxml import etree

from archive.adapters.seda_schemas import validate
from integration.archive.conftest import (
    ArchiveEnv,
    expired_metadata,
    running_archive,
    sample_metadata,
)
from mutualis_kernel.runtime.cluster import LocalCluster
from mutualis_trust.pki import DevPki

DOC = b"%PDF-1.4\n%minimal\n" + b"x" * 5000 + b"\n%%EOF\n"


async def test_disposal_is_refused_under_hold_and_for_permanent_records(
    archive: ArchiveEnv,
) -> None:
    tenant, h = "le-bouscat", archive.headers("le-bouscat")
    expired = (await archive.ingest(tenant, DOC, key="old", metadata=expired_metadata())).json()
    forever = (
        await archive.ingest(tenant, DOC, key="forever", metadata=expired_metadata("keep"))
    ).json()
    candidates = await archive.http.get(f"/v1/archive/{tenant}/disposals/candidates", headers=h)
    ids = [r["record_id"] for r in candidates.json()]
    assert expired["record_id"] in ids
    assert forever["record_id"] not in ids

    refused = await archive.http.post(
        f"/v1/archive/{tenant}/disposals", json={"record_ids": [forever["record_id"]]}, headers=h
    )
    assert refused.status_code == 409
    assert "kept permanently" in refused.json()["detail"]

    hold = await archive.http.post(
        f"/v1/archive/{tenant}/records/{expired['record_id']}/holds",
        json={"reason": "contentieux TA Bordeaux"},
        headers=h,
    )
    hold_id = next(iter(hold.json()["holds"]))
    held = await archive.http.post(
        f"/v1/archive/{tenant}/disposals", json={"record_ids": [expired["record_id"]]}, headers=h
    )
    assert held.status_code == 409
    assert "legal hold" in held.json()["detail"]

    await archive.http.delete(
        f"/v1/archive/{tenant}/records/{expired['record_id']}/holds/{hold_id}", headers=h
    )
    done = await archive.http.post(
        f"/v1/archive/{tenant}/disposals", json={"record_ids": [expired["record_id"]]}, headers=h
    )
    assert done.status_code == 201, done.text
    gone = await archive.http.get(
        f"/v1/archive/{tenant}/records/{expired['record_id']}/content", headers=h
    )
    assert gone.status_code == 410
    certificate = await archive.http.get(
        f"/v1/archive/{tenant}/records/{done.json()['certificate_record_id']}/content", headers=h
    )
    assert expired["content"]["sha256"] in certificate.text
    assert (await archive.service.verify(tenant)).ok


async def test_an_agent_cannot_approve_a_disposal(archive: ArchiveEnv) -> None:
    response = await archive.http.post(
        "/v1/archive/le-bouscat/disposals",
        json={"record_ids": ["x"]},
        headers=archive.headers("le-bouscat", ("agent",)),
    )
    assert response.status_code == 403


async def test_a_seda_export_validates_and_imports_into_another_tenant_identically(
    archive: ArchiveEnv, seda_xsd_dir: Path
) -> None:
    source, target = "blanquefort", "le-haillan"
    metadata = sample_metadata(
        retention={"duration": "P30Y", "final_action": "review", "start_date": "2020-05-01"},
        communicability_delay="P25Y",
        description="Plan local d'urbanisme",
    )
    first = (await archive.ingest(source, DOC, key="plu", metadata=metadata)).json()
    second = (await archive.ingest(source, b"\x89PNG\r\n\x1a\n" + b"\0" * 300, key="map")).json()

    export = await archive.http.post(
        f"/v1/archive/{source}/exports",
        json={"record_ids": [first["record_id"], second["record_id"]]},
        headers=archive.headers(source),
    )
    assert export.status_code == 200, export.text
    with zipfile.ZipFile(io.BytesIO(export.content)) as package:
        manifest = package.read("manifest.xml")
    assert validate(manifest, seda_xsd_dir) == []

    imported = await archive.http.post(
        f"/v1/archive/{target}/imports",
        files={"package": ("transfer.zip", export.content, "application/zip")},
        headers=archive.headers(target),
    )
    assert imported.status_code == 201, imported.text
    copies = [
        (
            await archive.http.get(
                f"/v1/archive/{target}/records/{i}", headers=archive.headers(target)
            )
        ).json()
        for i in imported.json()["record_ids"]
    ]
    originals = {r["content"]["sha512"]: r for r in (first, second)}
    for copy in copies:
        original = originals[copy["content"]["sha512"]]
        assert copy["content"]["sha256"] == original["content"]["sha256"]
        assert copy["metadata"] == original["metadata"]
        assert copy["tenant"] == target


def test_the_validator_really_rejects_an_invalid_manifest(seda_xsd_dir: Path) -> None:
    broken = etree.tostring(
        etree.Element("{fr:gouv:culture:archivesdefrance:seda:v2.2}ArchiveTransfer")
    )
    assert validate(broken, seda_xsd_dir) != []


async def test_without_the_schemas_export_answers_503_naming_the_make_target(
    nats_cluster: LocalCluster, pki: DevPki, tmp_path: Path
) -> None:
    tenant = "blanquefort"
    empty = tmp_path / "no-schemas"
    async with running_archive(nats_cluster, pki, tmp_path, seda_xsd_dir=empty) as archive:
        assert (await archive.ingest(tenant, DOC, key="no-xsd")).status_code == 201
        export = await archive.http.post(
            f"/v1/archive/{tenant}/exports", json={}, headers=archive.headers(tenant)
        )
    assert export.status_code == 503, export.text
    assert export.json()["error"] == "seda_schemas_missing"
    assert "make seda-schemas" in export.json()["detail"]
