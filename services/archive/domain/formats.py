"""Format identification from signature bytes (magic numbers), never from file names.

ZIP-based office formats are told apart by their content (an ODF `mimetype` entry, an OOXML
`word/`, `xl/` or `ppt/` part), which the adapter reads and passes in: this module stays pure.
"""

from __future__ import annotations

from collections.abc import Sequence

from archive.domain.model import FormatInfo

#: Bytes scanned for markers (PDF/A identification lives in XMP metadata, anywhere in the file).
PDFA_MARKERS = (b"pdfaid:part", b"<pdfaid:part>")

OLE_SIGNATURE = bytes.fromhex("D0CF11E0A1B11AE1")
ZIP_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06")

_ODF = {
    "application/vnd.oasis.opendocument.text": "OpenDocument Text",
    "application/vnd.oasis.opendocument.spreadsheet": "OpenDocument Spreadsheet",
    "application/vnd.oasis.opendocument.presentation": "OpenDocument Presentation",
}
_OOXML = (
    (
        "word/",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "Office Open XML Document (docx)",
    ),
    (
        "xl/",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "Office Open XML Workbook (xlsx)",
    ),
    (
        "ppt/",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        "Office Open XML Presentation (pptx)",
    ),
)

OCTET_STREAM = FormatInfo(mime_type="application/octet-stream", name="Unknown binary")


def is_zip(head: bytes) -> bool:
    return head.startswith(ZIP_SIGNATURES)


def identify(
    head: bytes,
    *,
    pdfa_marker_seen: bool = False,
    zip_names: Sequence[str] | None = None,
    odf_mimetype: bytes | None = None,
) -> FormatInfo:
    """The format of content whose first bytes are `head` (a few KiB suffice)."""
    if head.startswith(b"%PDF-"):
        version = head[5:8].decode("ascii", "replace")
        if pdfa_marker_seen:
            return FormatInfo(mime_type="application/pdf", name=f"PDF/A (PDF {version})", pdfa=True)
        return FormatInfo(mime_type="application/pdf", name=f"PDF {version}")
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return FormatInfo(mime_type="image/png", name="PNG")
    if head.startswith(b"\xff\xd8\xff"):
        return FormatInfo(mime_type="image/jpeg", name="JPEG")
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return FormatInfo(mime_type="image/tiff", name="TIFF")
    if head.startswith(OLE_SIGNATURE):
        return FormatInfo(
            mime_type="application/x-ole-storage",
            name="OLE2 compound document (legacy Office: doc/xls/ppt)",
        )
    if is_zip(head):
        return _zip_format(zip_names or (), odf_mimetype)
    if _looks_like_xml(head):
        return FormatInfo(mime_type="application/xml", name="XML")
    return OCTET_STREAM


def _zip_format(names: Sequence[str], odf_mimetype: bytes | None) -> FormatInfo:
    if odf_mimetype is not None:
        mime = odf_mimetype.decode("ascii", "replace").strip()
        if mime in _ODF:
            return FormatInfo(mime_type=mime, name=_ODF[mime])
    for prefix, mime, name in _OOXML:
        if "[Content_Types].xml" in names and any(n.startswith(prefix) for n in names):
            return FormatInfo(mime_type=mime, name=name)
    return FormatInfo(mime_type="application/zip", name="ZIP archive")


def _looks_like_xml(head: bytes) -> bool:
    text = head.lstrip(b"\xef\xbb\xbf").lstrip()
    if text.startswith(b"<?xml"):
        return True
    # UTF-16 with BOM
    for bom, encoding in ((b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be")):
        if head.startswith(bom):
            return head[2:].decode(encoding, "ignore").lstrip().startswith("<?xml")
    return False
