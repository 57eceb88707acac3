"""Checking uploads are usable PDFs before anything is stored, with the platform's one rule
(`mutualis_trust.pades.inspect_pdf`): a PDF, readable, unencrypted, with pages, within size."""

from __future__ import annotations

from pathlib import Path

from mutualis_trust.pades import InvalidPdf, inspect_pdf
from parapheur.service_layer.ports import InvalidDocument


class PdfChecker:
    def __init__(self, max_bytes: int | None = None) -> None:
        self._max_bytes = max_bytes

    def check(self, path: Path) -> None:
        try:
            inspect_pdf(path, max_bytes=self._max_bytes)
        except InvalidPdf as error:
            raise InvalidDocument(error.reason) from None
