"""Tampering is caught: a flipped byte in an object, an edited journal entry, a swapped seal
token; and a seal exported to files verifies with plain `openssl ts -verify`."""

from __future__ import annotations

import base64
import json
import subprocess

from archive import cli_support
from archive.manifest import CONTENT, JOURNAL_STREAM, journal_subject, seals_subject
from integration.archive.conftest import ArchiveEnv

CONTENT_BYTES = b"<?xml version='1.0'?><acte>arrete municipal</acte>\n" * 100


async def _ingest(archive: ArchiveEnv, tenant: str, key: str) -> dict[str, object]:
    response = await archive.ingest(tenant, CONTENT_BYTES, key=key)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def test_a_sealed_journal_verifies_and_its_seal_passes_openssl(archive: ArchiveEnv) -> None:
    tenant = "begles"
    record = await _ingest(archive, tenant, "sealed-1")
    assert record["content"]["format"]["mime_type"] == "application/xml"  # type: ignore[index]
    seal = await archive.http.post(f"/v1/archive/{tenant}/seals", headers=archive.headers(tenant))
    assert seal.status_code == 201, seal.text
    report = await archive.http.post(
        f"/v1/archive/{tenant}/verify", headers=archive.headers(tenant)
    )
    assert report.json()["ok"] is True, report.json()
    assert report.json()["seals_checked"] == 1

    exported = await cli_support.seal_export(
        archive.platform.js,
        archive.platform.settings,
        tenant,
        1,
        archive.tmp / "seal",  # type: ignore[arg-type]
    )
    result = subprocess.run(  # noqa: ASYNC221 - the test waits for openssl on purpose
        [
            "openssl",
            "ts",
            "-verify",
            "-data",
            str(exported.data_file),
            "-in",
            str(exported.token_file),
            "-CAfile",
            str(exported.chain_file),
        ],
        capture_output=True,
        text=True,
    )
    assert "Verification: OK" in result.stdout, result.stdout + result.stderr


async def test_a_flipped_byte_in_a_stored_object_is_caught(archive: ArchiveEnv) -> None:
    tenant = "floirac"
    record = await _ingest(archive, tenant, "to-be-damaged")
    name = record["content"]["object_name"]  # type: ignore[index]
    damaged = bytearray(CONTENT_BYTES)
    damaged[100] ^= 0x01
    store = await archive.platform.js.object_store(CONTENT)
    await store.put(name, bytes(damaged))  # what a disk fault or an intruder would leave

    report = await archive.service.verify(tenant)
    assert not report.ok
    assert report.broken_objects[0].record_id == record["record_id"]
    stored, _ = await archive.service.records.load(tenant, str(record["record_id"]))
    assert stored is not None
    audit = await archive.service.check_fixity(stored)  # emits archive.integrity.failed
    assert audit.ok is False


async def test_an_edited_journal_entry_is_named(archive: ArchiveEnv) -> None:
    tenant = "bruges"
    for key in ("j1", "j2", "j3"):
        await _ingest(archive, tenant, key)
    js = archive.platform.js
    messages = [m async for m in archive.service.journal.raw_entries(tenant)]
    stream_seq, body = messages[1]
    entry = json.loads(body)
    entry["details"]["sha256"] = "f" * 64
    # Delete the entry and put the forged one back at its place in the subject's order.
    await js.delete_msg(JOURNAL_STREAM, stream_seq)
    for later_seq, _ in messages[2:]:
        await js.delete_msg(JOURNAL_STREAM, later_seq)
    await js.publish(journal_subject(tenant), json.dumps(entry).encode())
    for _, later_body in messages[2:]:
        await js.publish(journal_subject(tenant), later_body)

    report = await archive.service.verify(tenant, check_objects=False)
    assert not report.ok
    assert report.first_broken_entry is not None
    assert report.first_broken_entry.seq == 2


async def test_a_swapped_seal_token_is_caught(archive: ArchiveEnv) -> None:
    tenant = "carbon-blanc"
    await _ingest(archive, tenant, "s1")
    await archive.service.seal(tenant)
    await _ingest(archive, tenant, "s2")
    await archive.service.seal(tenant)
    js = archive.platform.js
    seals = [m async for m in archive.service.journal._read(seals_subject(tenant))]
    (seq1, body1), (seq2, body2) = seals
    first, second = json.loads(body1), json.loads(body2)
    first["tsr_b64"], second["tsr_b64"] = second["tsr_b64"], first["tsr_b64"]
    await js.delete_msg(JOURNAL_STREAM, seq1)
    await js.delete_msg(JOURNAL_STREAM, seq2)
    await js.publish(seals_subject(tenant), json.dumps(first).encode())
    await js.publish(seals_subject(tenant), json.dumps(second).encode())

    report = await archive.service.verify(tenant, check_objects=False)
    assert not report.ok
    assert [p.number for p in report.broken_seals] == [1, 2]
    assert "timestamp token" in report.broken_seals[0].reason
    assert base64  # the token bytes really were swapped, not re-encoded
