"""Search within a tenant by document type, keyword and document dates (GET /records)."""

from __future__ import annotations

from typing import Any

from integration.archive.conftest import ArchiveEnv, sample_metadata

TENANT, OTHER = "saint-aubin-de-medoc", "ambares-et-lagrave"


async def _put(
    archive: ArchiveEnv, tenant: str, key: str, document_type: str, day: str, keywords: list[str]
) -> str:
    metadata = sample_metadata(
        title=f"Acte {key}",
        document_type=document_type,
        document_date=day,
        keywords=keywords,
        retention={"duration": "P10Y", "final_action": "keep", "start_date": day},
    )
    body = b"<?xml version='1.0'?><acte>" + key.encode() + b"</acte>\n"
    response = await archive.ingest(tenant, body, key=key, metadata=metadata)
    assert response.status_code == 201, response.text
    return str(response.json()["record_id"])


async def _search(archive: ArchiveEnv, tenant: str, **query: str) -> list[str]:
    response = await archive.http.get(
        f"/v1/archive/{tenant}/records",
        params=query,
        headers=archive.headers(tenant, ("agent",)),
    )
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()
    return [r["record_id"] for r in found]


async def test_search_by_document_type_keyword_and_dates_stays_within_the_tenant(
    archive: ArchiveEnv,
) -> None:
    march = await _put(
        archive, TENANT, "march", "deliberation", "2024-03-01", ["urbanisme", "budget"]
    )
    june = await _put(archive, TENANT, "june", "arrete", "2024-06-15", ["voirie"])
    january = await _put(
        archive, TENANT, "january", "deliberation", "2025-01-10", ["Voirie", "budget"]
    )
    # The same kind of document in another commune: never part of this tenant's answers.
    elsewhere = await _put(archive, OTHER, "elsewhere", "deliberation", "2024-06-15", ["voirie"])
    mine = {march, june, january}

    assert set(await _search(archive, TENANT)) >= mine
    assert elsewhere not in await _search(archive, TENANT)

    # By document type, oldest document first.
    assert await _search(archive, TENANT, document_type="deliberation") == [march, january]
    assert await _search(archive, TENANT, document_type="permis-de-construire") == []
    # By keyword, whatever its case.
    assert await _search(archive, TENANT, keyword="voirie") == [june, january]
    assert await _search(archive, TENANT, keyword="BUDGET") == [march, january]
    # By document date, both bounds included.
    assert await _search(archive, TENANT, date_from="2024-06-15") == [june, january]
    assert await _search(archive, TENANT, date_to="2024-06-15") == [march, june]
    assert await _search(archive, TENANT, date_from="2024-06-15", date_to="2024-06-15") == [june]
    # Criteria combine.
    assert await _search(
        archive, TENANT, document_type="deliberation", keyword="voirie", date_from="2024-12-01"
    ) == [january]
    assert await _search(
        archive, TENANT, keyword="voirie", date_from="2024-01-01", date_to="2024-12-31"
    ) == [june]

    assert await _search(archive, OTHER, keyword="voirie") == [elsewhere]
    as_other = await archive.http.get(
        f"/v1/archive/{OTHER}/records", headers=archive.headers(TENANT, ("agent",))
    )
    assert as_other.status_code == 403
    bad_date = await archive.http.get(
        f"/v1/archive/{TENANT}/records",
        params={"date_from": "last spring"},
        headers=archive.headers(TENANT, ("agent",)),
    )
    assert bad_date.status_code == 422
