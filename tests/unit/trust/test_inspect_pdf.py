"""Uploads are checked before anything is stored: a readable, unencrypted PDF, not too large."""

from __future__ import annotations

from pathlib import Path

import pytest

from mutualis_trust.pades import InvalidPdf, inspect_pdf
from mutualis_trust.testing import encrypted_pdf, minimal_pdf


def test_a_small_pdf_is_described() -> None:
    info = inspect_pdf(minimal_pdf(pages=3))
    assert info.page_count == 3
    assert info.pdf_version == "1.7"
    assert info.signature_count == 0


def test_a_pdf_on_disk_is_read_from_its_path(tmp_path: Path) -> None:
    path = tmp_path / "doc.pdf"
    path.write_bytes(minimal_pdf())
    assert inspect_pdf(path).size == path.stat().st_size


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "empty"),
        (b"PK\x03\x04 this is a zip file", "not a PDF"),
        (b"<html><body>hello</body></html>", "not a PDF"),
        (b"%PDF-1.7\n garbage without objects", "malformed"),
    ],
)
def test_non_pdf_and_broken_uploads_are_refused_with_a_reason(content: bytes, reason: str) -> None:
    with pytest.raises(InvalidPdf, match=reason):
        inspect_pdf(content)


def test_an_encrypted_pdf_is_refused() -> None:
    with pytest.raises(InvalidPdf, match="encrypted"):
        inspect_pdf(encrypted_pdf())


def test_an_oversized_pdf_is_refused_before_parsing() -> None:
    pdf = minimal_pdf()
    with pytest.raises(InvalidPdf, match="more than"):
        inspect_pdf(pdf, max_bytes=len(pdf) - 1)
