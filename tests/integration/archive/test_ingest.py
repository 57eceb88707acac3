"""Ingest through the API: stored once, hashed, identified, journaled; tenants are walls."""

from __future__ import annotations

import hashlib

from integration.archive.conftest import ArchiveEnv, sample_metadata

PDF = b"%PDF-1.7\n1 0 obj <</Type/Catalog>> endobj\n<pdfaid:part>2</pdfaid:part>\n%%EOF\n" * 50


async def test_an_agent_archives_a_document_with_its_hashes_and_format(archive: ArchiveEnv) -> None:
    response = await archive.ingest(
        "bordeaux", PDF, key="deliberation-12", sha256=hashlib.sha256(PDF).hexdigest()
    )
    assert response.status_code == 201, response.text
    record = response.json()
    assert record["content"]["sha256"] == hashlib.sha256(PDF).hexdigest()
    assert record["content"]["sha512"] == hashlib.sha512(PDF).hexdigest()
    assert record["content"]["format"]["pdfa"] is True
    assert record["tenant"] == "bordeaux"

    download = await archive.http.get(
        f"/v1/archive/bordeaux/records/{record['record_id']}/content",
        headers=archive.headers("bordeaux", ("agent",)),
    )
    assert download.status_code == 200
    assert download.content == PDF

    operations = [e.operation async for e in archive.service.journal.entries("bordeaux")]
    assert "ingest" in operations
    assert operations[-1] == "access"


async def test_the_same_submission_twice_makes_one_record(archive: ArchiveEnv) -> None:
    first = await archive.ingest("bordeaux", PDF, key="retried-once")
    second = await archive.ingest("bordeaux", PDF, key="retried-once")
    assert first.status_code == 201
    assert second.status_code == 201
    assert first.json()["record_id"] == second.json()["record_id"]
    found = await archive.http.get(
        "/v1/archive/bordeaux/records",
        params={"title": "conseil"},
        headers=archive.headers("bordeaux"),
    )
    ids = [r["record_id"] for r in found.json()]
    assert ids.count(first.json()["record_id"]) == 1
    ingests = [
        e
        async for e in archive.service.journal.entries("bordeaux")
        if e.operation == "ingest" and e.record_id == first.json()["record_id"]
    ]
    assert len(ingests) == 1


async def test_a_declared_hash_that_does_not_match_is_refused_with_the_reason(
    archive: ArchiveEnv,
) -> None:
    response = await archive.ingest("bordeaux", PDF, key="mismatch", sha256="0" * 64)
    assert response.status_code == 422
    assert response.json()["error"] == "hash_mismatch"
    assert "does not match" in response.json()["detail"]


async def test_another_tenant_cannot_see_or_download_a_record(archive: ArchiveEnv) -> None:
    record = (await archive.ingest("pessac", PDF, key="pessac-only")).json()
    path = f"/v1/archive/pessac/records/{record['record_id']}"
    as_merignac = archive.headers("merignac", ("archivist",))
    assert (await archive.http.get(path, headers=as_merignac)).status_code == 403
    assert (await archive.http.get(path + "/content", headers=as_merignac)).status_code == 403
    # Asking in one's own tenant for another tenant's record id finds nothing.
    own = f"/v1/archive/merignac/records/{record['record_id']}"
    assert (await archive.http.get(own, headers=as_merignac)).status_code == 404


async def test_a_restricted_record_is_hidden_from_agents_until_communicable(
    archive: ArchiveEnv,
) -> None:
    metadata = sample_metadata(communicability_delay="P75Y", title="Dossier médical restreint")
    record = (await archive.ingest("talence", PDF, key="restricted", metadata=metadata)).json()
    path = f"/v1/archive/talence/records/{record['record_id']}"
    assert (
        await archive.http.get(path, headers=archive.headers("talence", ("agent",)))
    ).status_code == 404
    assert (
        await archive.http.get(path, headers=archive.headers("talence", ("archivist",)))
    ).status_code == 200
    listed = await archive.http.get(
        "/v1/archive/talence/records", headers=archive.headers("talence", ("agent",))
    )
    assert record["record_id"] not in [r["record_id"] for r in listed.json()]
