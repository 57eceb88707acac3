"""The archive's pure rules: retention arithmetic, disposal eligibility, formats, the chain."""

from __future__ import annotations

import io
import zipfile
from datetime import UTC, date, datetime

import pytest

from archive.domain import errors, formats
from archive.domain.journal import check_chain, merkle_root, next_entry, seal_statement
from archive.domain.model import (
    ContentInfo,
    FormatInfo,
    Hold,
    Record,
    RecordMetadata,
    RetentionRule,
    add_duration,
)

NOW = datetime(2024, 1, 1, tzinfo=UTC)


def record(final_action: str = "destroy", start: date = date(2000, 1, 1), **kw: object) -> Record:
    metadata = RecordMetadata(
        title="t",
        originating_service="s",
        document_type="d",
        document_date=start,
        retention=RetentionRule(duration="P10Y", final_action=final_action, start_date=start),  # type: ignore[arg-type]
        communicability_delay=str(kw.pop("delay", "P0D")),
    )
    content = ContentInfo(
        object_name="o",
        filename="f",
        size=1,
        sha256="a",
        sha512="b",
        format=FormatInfo(mime_type="x", name="x"),
    )
    return Record(
        record_id="r",
        tenant="bordeaux",
        metadata=metadata,
        content=content,
        source="api",
        source_ref="k",
        ingested_by="u",
        ingested_at=NOW,
        **kw,
    )  # type: ignore[arg-type]


def test_durations_follow_the_calendar() -> None:
    assert add_duration(date(2020, 2, 29), "P1Y") == date(2021, 2, 28)
    assert add_duration(date(2021, 1, 31), "P1M") == date(2021, 2, 28)
    assert add_duration(date(2021, 1, 1), "P10D") == date(2021, 1, 11)
    with pytest.raises(errors.InvalidMetadata):
        add_duration(date(2021, 1, 1), "ten years")


def test_only_expired_destroy_records_without_hold_are_eligible() -> None:
    today = date(2024, 1, 1)
    assert record().eligible_for_disposal(today)
    assert record("keep").disposal_blocker(today) == "kept permanently"
    assert "review" in (record("review").disposal_blocker(today) or "")
    assert "runs until" in (record(start=date(2020, 1, 1)).disposal_blocker(today) or "")
    hold = Hold(hold_id="h", reason="r", placed_by="a", placed_at=NOW)
    assert "legal hold" in (record(holds={"h": hold}).disposal_blocker(today) or "")


def test_communicability_hides_from_agents_not_archivists() -> None:
    restricted = record(delay="P50Y")
    assert not restricted.visible_to(frozenset({"agent"}), date(2024, 1, 1))
    assert restricted.visible_to(frozenset({"archivist"}), date(2024, 1, 1))
    assert restricted.visible_to(frozenset({"agent"}), date(2050, 1, 1))


def _zip(names: dict[str, bytes]) -> tuple[bytes, list[str]]:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for name, data in names.items():
            z.writestr(name, data)
    return buffer.getvalue()[:8], list(names)


@pytest.mark.parametrize(
    ("head", "mime"),
    [
        (b"%PDF-1.7\n", "application/pdf"),
        (b"\x89PNG\r\n\x1a\nxxxx", "image/png"),
        (b"\xff\xd8\xff\xe0", "image/jpeg"),
        (b"II*\x00", "image/tiff"),
        (b"\xef\xbb\xbf<?xml version='1.0'?>", "application/xml"),
        (formats.OLE_SIGNATURE, "application/x-ole-storage"),
        (b"plain text", "application/octet-stream"),
    ],
)
def test_formats_are_identified_by_signature_bytes(head: bytes, mime: str) -> None:
    assert formats.identify(head).mime_type == mime


def test_pdfa_and_zip_based_office_formats() -> None:
    assert formats.identify(b"%PDF-1.4", pdfa_marker_seen=True).pdfa
    head, names = _zip({"[Content_Types].xml": b"", "word/document.xml": b""})
    assert formats.identify(head, zip_names=names).name.endswith("(docx)")
    head, names = _zip({"[Content_Types].xml": b"", "xl/workbook.xml": b""})
    assert formats.identify(head, zip_names=names).name.endswith("(xlsx)")
    odt = b"application/vnd.oasis.opendocument.text"
    head, names = _zip({"mimetype": odt})
    assert formats.identify(head, zip_names=names, odf_mimetype=odt).name == "OpenDocument Text"


def test_the_chain_names_the_first_edited_entry() -> None:
    entries = []
    previous = None
    for i in range(5):
        previous = next_entry(
            previous, time=NOW, tenant="t", operation="ingest", record_id=str(i), details={}
        )
        entries.append(previous)
    assert check_chain(entries) is None
    forged = entries[2].model_copy(update={"details": {"x": 1}})
    broken = check_chain([*entries[:2], forged, *entries[3:]])
    assert broken is not None
    assert broken.seq == 3


def test_merkle_root_and_seal_chaining() -> None:
    hashes = [f"{i:064x}" for i in range(7)]
    assert merkle_root(hashes) != merkle_root(hashes[:6])
    entries = [
        next_entry(None, time=NOW, tenant="t", operation="ingest", record_id=None, details={})
    ]
    first = seal_statement(tenant="t", previous=None, entries=entries, sealed_at=NOW)
    second_entries = [
        next_entry(entries[0], time=NOW, tenant="t", operation="seal", record_id=None, details={})
    ]
    second = seal_statement(tenant="t", previous=first, entries=second_entries, sealed_at=NOW)
    assert second.prev_seal_digest == first.digest
    assert second.number == 2
