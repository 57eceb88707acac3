"""Tampering is caught: a flipped byte in an object, an edited journal entry, a swapped seal
token; the servers refuse to delete or purge the evidence; and a seal exported to files
verifies with plain `openssl ts -verify`."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime

import nats
import pytest
from nats.js.errors import APIError

from archive import cli_support
from archive.adapters.journal import Seal
from archive.domain.journal import seal_statement
from archive.manifest import (
    CONTENT,
    EVENTS_STREAM,
    JOURNAL_STREAM,
    journal_subject,
    seals_subject,
)
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


async def test_the_servers_refuse_to_delete_or_purge_the_journal_and_the_records(
    archive: ArchiveEnv,
) -> None:
    tenant = "le-haillan"
    await _ingest(archive, tenant, "kept")
    js = archive.platform.js
    for stream in (JOURNAL_STREAM, EVENTS_STREAM):
        first = (await js.stream_info(stream)).state.first_seq
        with pytest.raises(APIError, match="message delete not permitted"):
            await js.delete_msg(stream, first)
        with pytest.raises(APIError, match="stream purge not permitted"):
            await js.purge_stream(stream)
        with pytest.raises(APIError, match="stream purge not permitted"):
            await js.purge_stream(stream, subject=journal_subject(tenant))
    report = await archive.service.verify(tenant, check_objects=False)
    assert report.ok, report.summary()


async def test_an_edited_entry_published_behind_the_chain_is_named(archive: ArchiveEnv) -> None:
    """Entries cannot be deleted (the stream denies it): an intruder with publish rights can only
    append an edited copy and hope readers take it for the original."""
    tenant = "bruges"
    for key in ("j1", "j2", "j3"):
        await _ingest(archive, tenant, key)
    messages = [m async for m in archive.service.journal.raw_entries(tenant)]
    _, body = messages[1]
    entry = json.loads(body)
    entry["details"]["sha256"] = "f" * 64
    await _raw_publish(archive, journal_subject(tenant), json.dumps(entry).encode())

    report = await archive.service.verify(tenant, check_objects=False)
    assert not report.ok
    assert report.first_broken_entry is not None
    assert report.first_broken_entry.seq == 4
    assert "found 2" in report.first_broken_entry.reason


async def test_a_seal_forged_with_another_seals_token_is_caught(archive: ArchiveEnv) -> None:
    tenant = "carbon-blanc"
    await _ingest(archive, tenant, "s1")
    await archive.service.seal(tenant)
    await _ingest(archive, tenant, "s2")
    first, _ = await archive.service.journal.last_seal(tenant)
    assert first is not None
    # A well-formed seal over the entries since seal 1, without asking the TSA: the token is
    # the one seal 1 got, swapped in.
    statement = seal_statement(
        tenant=tenant,
        previous=first.parsed(),
        entries=[
            e
            async for e in archive.service.journal.entries(tenant)
            if e.seq > first.parsed().last_seq
        ],
        sealed_at=datetime.now(UTC),
    )
    forged = Seal(
        number=statement.number,
        statement=statement.to_bytes().decode(),
        tsr_b64=first.tsr_b64,
        tsa_chain_pem=first.tsa_chain_pem,
    )
    await _raw_publish(archive, seals_subject(tenant), forged.model_dump_json().encode())

    report = await archive.service.verify(tenant, check_objects=False)
    assert not report.ok
    assert [p.number for p in report.broken_seals] == [2]
    assert "timestamp token" in report.broken_seals[0].reason


async def _raw_publish(archive: ArchiveEnv, subject: str, body: bytes) -> None:
    """What an intruder with the credentials of a JetStream client can do: plain nats-py."""
    nc = await nats.connect(servers=archive.platform.settings.nats_urls)
    try:
        await nc.jetstream().publish(subject, body)
    finally:
        await nc.close()
