"""PAdES signatures on PDF documents: sign, validate, cross-check with poppler, inspect uploads.

Owns the use of pyHanko for incremental PAdES signatures (baseline B-B, B-T with an RFC 3161
timestamp, B-LTA with validation data and a document timestamp) and for validation, the call to
poppler's `pdfsig` (an independent verifier with its own NSS trust store), and the upload checks
(`inspect_pdf`). Every signature is an incremental update, so earlier signatures stay valid.

Documents flow through seekable file objects: pyHanko reads the cross-reference table and the
objects it needs, copies the original bytes to the output and appends the new revision. The
output must be readable too (a file opened "w+b"): pyHanko writes the signed document straight
into it only then, and otherwise builds the whole document in memory and copies it at the end.
It must not decide who signs nor hold keys: signers come from `pkcs11.Token` /
`identities.SigningIdentities`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO, Literal

import aiohttp
from asn1crypto import core as asn1_core  # type: ignore[import-untyped]
from asn1crypto import tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pydantic import BaseModel, ConfigDict
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.misc import PdfError, prepare_rw_output_stream
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import fields, signers
from pyhanko.sign.general import SigningError
from pyhanko.sign.signers import Signer
from pyhanko.sign.timestamps.api import TimeStamper
from pyhanko.sign.timestamps.common_utils import TimestampRequestError
from pyhanko.sign.validation import async_validate_pdf_signature, async_validate_pdf_timestamp
from pyhanko.sign.validation.pdf_embedded import EmbeddedPdfSignature
from pyhanko.stamp import TextStampStyle
from pyhanko_certvalidator import ValidationContext

from mutualis_trust.metrics import TrustMetrics, tsa_host

PadesLevel = Literal["B-B", "B-T", "B-LTA"]

PDF_MAGIC = b"%PDF-"
#: PDF 1.7 allows junk before the header; readers look within the first kilobyte.
HEADER_WINDOW = 1024


class InvalidPdf(Exception):
    """An upload is not a PDF we accept; `reason` is safe to show to the user."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PadesError(Exception):
    """Signing failed (token, TSA or document problem), with the cause in the message."""


class PdfsigUnavailable(Exception):
    """`pdfsig` or `certutil` is not installed (Debian packages poppler-utils, libnss3-tools)."""


# --- inspection of uploads -------------------------------------------------------------------


class PdfInfo(BaseModel):
    model_config = ConfigDict(frozen=True)

    size: int
    page_count: int
    pdf_version: str
    signature_count: int


def _open_source(source: bytes | Path | BinaryIO) -> tuple[BinaryIO, bool]:
    if isinstance(source, bytes | bytearray):
        return io.BytesIO(source), True
    if isinstance(source, Path | str):
        return open(source, "rb"), True
    return source, False


def inspect_pdf(source: bytes | Path | BinaryIO, *, max_bytes: int | None = None) -> PdfInfo:
    """Check an upload: a readable, unencrypted PDF with pages, within `max_bytes`.

    Raises `InvalidPdf` with a message fit for a 4xx answer.
    """
    stream, owned = _open_source(source)
    try:
        stream.seek(0, os.SEEK_END)
        size = stream.tell()
        stream.seek(0)
        if size == 0:
            raise InvalidPdf("the file is empty")
        if max_bytes is not None and size > max_bytes:
            raise InvalidPdf(f"the file is {size} bytes, more than the {max_bytes} allowed")
        head = stream.read(HEADER_WINDOW)
        at = head.find(PDF_MAGIC)
        if at < 0:
            raise InvalidPdf("not a PDF (no %PDF- header)")
        version = head[at + 5 : at + 8].decode("ascii", "replace")
        stream.seek(0)
        try:
            reader = PdfFileReader(stream, strict=False)
            if reader.encrypted:
                raise InvalidPdf("encrypted PDFs are refused: remove the password and retry")
            pages = int(reader.root["/Pages"]["/Count"])
            signatures = len(reader.embedded_signatures)
        except InvalidPdf:
            raise
        except (PdfError, ValueError, KeyError, TypeError, IndexError) as e:
            raise InvalidPdf(f"malformed PDF: {e}") from None
        if pages < 1:
            raise InvalidPdf("the PDF has no pages")
        return PdfInfo(size=size, page_count=pages, pdf_version=version, signature_count=signatures)
    finally:
        if owned:
            stream.close()
        else:
            stream.seek(0)


# --- signing -------------------------------------------------------------------------------


class SignedPdf(BaseModel):
    """What `sign_pdf` did: which field it filled, at which level, for whom, and when."""

    model_config = ConfigDict(frozen=True)

    field_name: str
    level: PadesLevel
    signer: str
    certificate_sha256: str
    #: The signing time the signature claims (the signer's clock, a signed attribute).
    signing_time: dt.datetime
    #: The signature timestamp's genTime (B-T, B-LTA): the time a verifier trusts.
    timestamp_time: dt.datetime | None = None


def validation_context(
    trust_roots: Sequence[x509.Certificate | Path], *, for_signing: bool = False
) -> ValidationContext:
    """A pyHanko validation context trusting exactly `trust_roots` (PEM paths or certificates).

    No fetching of revocation data over the network: the dev PKI publishes none, and a
    production deployment configures its own context. Missing revocation data is tolerated
    (soft-fail), a revoked certificate is not.
    """
    roots: list[asn1_x509.Certificate] = []
    for root in trust_roots:
        if isinstance(root, Path | str):
            pem = Path(root).read_bytes()
            for block in re.findall(
                rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", pem, re.S
            ):
                cert = x509.load_pem_x509_certificate(block)
                roots.append(
                    asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))
                )
        else:
            roots.append(asn1_x509.Certificate.load(root.public_bytes(serialization.Encoding.DER)))
    return ValidationContext(
        trust_roots=roots,
        allow_fetching=False,
        revocation_mode="soft-fail",
    )


class _HttpTimestamper(TimeStamper):
    """pyHanko's RFC 3161 client over HTTP, one aiohttp session per request.

    Not pyHanko's `HTTPTimeStamper`: without a session of its own it builds an SSL context from
    certifi's bundle for every request (some 40 ms of CPU, even for an http:// TSA), and with
    one it is tied to one event loop. aiohttp's default session reuses one context per process.
    """

    def __init__(self, url: str, timeout: float, metrics: TrustMetrics | None) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.url = url
        self.timeout = timeout
        self._metrics = metrics

    async def async_request_tsa_response(self, req: tsp.TimeStampReq) -> tsp.TimeStampResp:
        headers = {
            "Content-Type": "application/timestamp-query",
            "Accept": "application/timestamp-reply",
        }
        ok = False
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout)) as http,
                http.post(self.url, data=req.dump(), headers=headers) as response,
            ):
                response.raise_for_status()
                body = await response.read()
            reply = tsp.TimeStampResp.load(body)
            # A refusal is a failed request too (pyHanko raises on it a little later).
            ok = reply["status"]["status"].native in ("granted", "granted_with_mods")
            return reply
        except (aiohttp.ClientError, OSError) as e:
            raise TimestampRequestError(f"timestamp authority {self.url}: {e!r}") from e
        except (ValueError, TypeError, KeyError) as e:
            raise TimestampRequestError(f"timestamp authority {self.url}: not a reply: {e}") from e
        finally:
            if self._metrics is not None:
                self._metrics.timestamp_requested(tsa_host(self.url), ok)


def http_timestamper(
    tsa_url: str, *, timeout: float = 30, metrics: TrustMetrics | None = None
) -> TimeStamper:
    """A reusable RFC 3161 client for `sign_pdf(..., timestamper=...)`.

    Keep one per TSA for the life of a signing service: pyHanko sizes the signature container
    with a dummy timestamp, which a reused timestamper fetches once, while a fresh one asks the
    TSA for it on every signature (two round trips instead of one). It opens an HTTP session
    per request, so it may be shared across threads and event loops. With `metrics`, every
    request to the TSA is counted, granted or not (the `TsaUnreachable` alert reads those).
    """
    return _HttpTimestamper(tsa_url, timeout, metrics)


def _check_output(output_stream: BinaryIO) -> None:
    """Refuse an output pyHanko would not sign into: a write-only stream (`open(path, "wb")`)
    makes it render the whole signed document into an in-memory buffer, copied out at the end.
    pyHanko's own test decides, so this follows it if it ever changes."""
    try:
        used = prepare_rw_output_stream(output_stream)  # type: ignore[no-untyped-call]
    except OSError:  # not even writable
        used = None
    if used is not output_stream:
        raise ValueError(
            "the output of sign_pdf must be readable, writable and seekable (open it 'w+b'): "
            "pyHanko would otherwise hold the whole signed PDF in memory"
        )


def _stamp_box(existing_signatures: int) -> tuple[int, int, int, int]:
    # Stamps tile the bottom of the first page, three per row, so later ones never hide earlier.
    col, row = existing_signatures % 3, existing_signatures // 3
    x, y = 36 + col * 180, 36 + row * 60
    return (x, y, x + 170, y + 50)


async def sign_pdf(
    input_stream: BinaryIO,
    output_stream: BinaryIO,
    signer: Signer,
    *,
    field_name: str,
    level: PadesLevel = "B-T",
    tsa_url: str | None = None,
    reason: str | None = None,
    location: str | None = None,
    name: str | None = None,
    contact_info: str | None = None,
    visible_stamp: bool = False,
    trust_roots: Sequence[x509.Certificate | Path] = (),
    timestamper: TimeStamper | None = None,
) -> SignedPdf:
    """Add one incremental PAdES signature to the PDF read from `input_stream`.

    `input_stream` must be seekable; the signed document (original bytes + the new revision) is
    written to `output_stream`, which must be readable, writable and seekable (a file opened
    "w+b", or a BytesIO): pyHanko then writes into it directly (a `ValueError` otherwise, see
    `_check_output`). B-T and B-LTA need `tsa_url` or a `timestamper` (see
    `http_timestamper`: reusing one saves a TSA round trip per signature); B-LTA also needs
    `trust_roots` (the CA and TSA chains whose validation data it embeds).

    CPU-bound for tens of milliseconds (pyHanko builds and hashes the revision in Python): a
    service should run it off its event loop, e.g. `asyncio.to_thread(asyncio.run, ...)`.
    """
    _check_output(output_stream)
    if level in ("B-T", "B-LTA") and not (tsa_url or timestamper):
        raise PadesError(f"PAdES {level} needs a timestamp authority URL")
    if level == "B-LTA" and not trust_roots:
        raise PadesError("PAdES B-LTA needs the trust roots of the signer and TSA chains")
    signing_cert = signer.signing_cert
    if signing_cert is None:
        raise PadesError("the signer has no certificate")
    signer_name = name or signing_cert.subject.native.get("common_name", "")
    meta = signers.PdfSignatureMetadata(
        field_name=field_name,
        md_algorithm="sha256",
        subfilter=fields.SigSeedSubFilter.PADES,
        reason=reason,
        location=location,
        name=signer_name,
        contact_info=contact_info,
        embed_validation_info=level == "B-LTA",
        use_pades_lta=level == "B-LTA",
        validation_context=validation_context(trust_roots) if level == "B-LTA" else None,
    )
    try:
        writer = IncrementalPdfFileWriter(input_stream, strict=False)
    except (PdfError, ValueError) as e:
        raise InvalidPdf(f"malformed PDF: {e}") from None
    if writer.prev.encrypted:
        raise InvalidPdf("encrypted PDFs cannot be signed")
    field_spec = None
    stamp_style = None
    if visible_stamp:
        existing = len(writer.prev.embedded_signatures)
        field_spec = fields.SigFieldSpec(
            sig_field_name=field_name, on_page=0, box=_stamp_box(existing)
        )
        stamp_style = TextStampStyle(
            stamp_text="Signed by %(signer)s\n%(ts)s" + (f"\n{reason}" if reason else ""),
        )
    if level == "B-B":
        timestamper = None
    elif timestamper is None:
        assert tsa_url is not None
        timestamper = http_timestamper(tsa_url)
    try:
        pdf_signer = signers.PdfSigner(
            meta,
            signer=signer,
            timestamper=timestamper,
            new_field_spec=field_spec,
            stamp_style=stamp_style,
        )
        await pdf_signer.async_sign_pdf(writer, output=output_stream)
    except (SigningError, PdfError) as e:
        raise PadesError(f"signing failed: {e}") from e
    except (aiohttp.ClientError, TimestampRequestError) as e:
        where = getattr(timestamper, "url", tsa_url)
        raise PadesError(f"timestamp authority {where} unreachable: {e!r}") from e
    signing_time, timestamp_time = _signature_times(output_stream, field_name)
    return SignedPdf(
        field_name=field_name,
        level=level,
        signer=signer_name,
        certificate_sha256=hashlib.sha256(signing_cert.dump()).hexdigest(),
        signing_time=signing_time,
        timestamp_time=timestamp_time,
    )


def _signature_times(signed: BinaryIO, field_name: str) -> tuple[dt.datetime, dt.datetime | None]:
    """(claimed signing time, timestamp genTime) of the signature just written, read back from
    the output: what the document says, rather than a clock read next to it."""
    signed.seek(0)
    try:
        reader = PdfFileReader(signed, strict=False)
        # That one field only: `reader.embedded_signatures` would parse every signature's
        # contents, some 10-20 ms of CPU per signature already in the document.
        found = next(
            EmbeddedPdfSignature(reader, sig_field, name)
            for name, _, sig_field in fields.enumerate_sig_fields(reader, filled_status=True)
            if name == field_name
        )
        claimed = found.self_reported_timestamp
        token = _signature_timestamp_token(found.signer_info)
    finally:
        signed.seek(0, os.SEEK_END)
    if token is None:
        return claimed or dt.datetime.now(dt.UTC), None
    gen_time: dt.datetime = token["encap_content_info"]["content"].parsed["gen_time"].native
    return claimed or gen_time, gen_time


def _signature_timestamp_token(signer_info: Any) -> Any | None:
    """The SignedData of the RFC 3161 signature timestamp in a CMS SignerInfo, if any."""
    unsigned = signer_info["unsigned_attrs"]
    # Not `.native`: that decodes (and re-encodes) the whole embedded token, seconds of CPU.
    if isinstance(unsigned, asn1_core.Void):
        return None
    for attribute in unsigned:
        if attribute["type"].native == "signature_time_stamp_token":
            return attribute["values"][0]["content"]
    return None


# --- validation with pyHanko -----------------------------------------------------------------


class SignatureCheck(BaseModel):
    """pyHanko's verdict on one signature (or document timestamp) of a PDF."""

    model_config = ConfigDict(frozen=True)

    field_name: str
    kind: Literal["signature", "document_timestamp"]
    intact: bool
    valid: bool
    trusted: bool
    #: None when the signature carries no timestamp (PAdES B-B).
    timestamp_valid: bool | None
    signer: str
    signer_organization: str | None
    #: The timestamp's time when there is one, otherwise the time the signer claims.
    signing_time: dt.datetime | None
    timestamp_time: dt.datetime | None
    coverage: str
    covers_whole_document: bool
    #: Whether the revisions after this signature only add signatures, timestamps, form data
    #: or validation data (pyHanko's difference analysis); None when unknown.
    later_changes_allowed: bool | None
    modification_level: str | None
    summary: str

    @property
    def ok(self) -> bool:
        return (
            self.intact
            and self.valid
            and self.trusted
            and self.timestamp_valid is not False
            and self.later_changes_allowed is not False
        )


class ValidationReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    signatures: list[SignatureCheck]

    @property
    def all_ok(self) -> bool:
        return bool(self.signatures) and all(s.ok for s in self.signatures)


def _subject(cert: Any) -> tuple[str, str | None]:
    native = cert.subject.native
    return str(native.get("common_name", cert.subject.human_friendly)), native.get(
        "organization_name"
    )


async def validate_pdf(
    source: Path | BinaryIO, trust_roots: Sequence[x509.Certificate | Path]
) -> ValidationReport:
    """Validate every signature and document timestamp of a PDF with pyHanko."""
    vc_roots = list(trust_roots)
    stream, owned = _open_source(source)
    try:
        reader = PdfFileReader(stream, strict=False)
        checks: list[SignatureCheck] = []
        for sig in reader.embedded_signatures:
            is_doc_ts = sig.sig_object_type == "/DocTimeStamp"
            if is_doc_ts:
                ts_status = await async_validate_pdf_timestamp(
                    sig, validation_context=validation_context(vc_roots)
                )
                cn, org = _subject(ts_status.signing_cert)
                checks.append(
                    SignatureCheck(
                        field_name=sig.field_name,
                        kind="document_timestamp",
                        intact=ts_status.intact,
                        valid=ts_status.valid,
                        trusted=ts_status.trusted,
                        timestamp_valid=bool(
                            ts_status.intact and ts_status.valid and ts_status.trusted
                        ),
                        signer=cn,
                        signer_organization=org,
                        signing_time=ts_status.timestamp,
                        timestamp_time=ts_status.timestamp,
                        coverage=ts_status.coverage.name if ts_status.coverage else "NONE",
                        covers_whole_document=sig.coverage is not None
                        and sig.coverage.name == "ENTIRE_FILE",
                        later_changes_allowed=ts_status.docmdp_ok,
                        modification_level=ts_status.modification_level.name
                        if ts_status.modification_level
                        else None,
                        summary=ts_status.summary(),
                    )
                )
                continue
            status = await async_validate_pdf_signature(
                sig,
                signer_validation_context=validation_context(vc_roots),
                ts_validation_context=validation_context(vc_roots),
            )
            ts = status.timestamp_validity
            cn, org = _subject(status.signing_cert)
            ts_time = ts.timestamp if ts is not None else None
            checks.append(
                SignatureCheck(
                    field_name=sig.field_name,
                    kind="signature",
                    intact=status.intact,
                    valid=status.valid,
                    trusted=status.trusted,
                    timestamp_valid=None
                    if ts is None
                    else bool(ts.intact and ts.valid and ts.trusted),
                    signer=cn,
                    signer_organization=org,
                    signing_time=ts_time or status.signer_reported_dt,
                    timestamp_time=ts_time,
                    coverage=status.coverage.name if status.coverage else "NONE",
                    covers_whole_document=status.coverage is not None
                    and status.coverage.name == "ENTIRE_FILE",
                    later_changes_allowed=status.docmdp_ok,
                    modification_level=status.modification_level.name
                    if status.modification_level
                    else None,
                    summary=status.summary(),
                )
            )
        return ValidationReport(signatures=checks)
    finally:
        if owned:
            stream.close()


# --- cross-check with poppler's pdfsig -----------------------------------------------------


class PdfsigSignature(BaseModel):
    model_config = ConfigDict(frozen=True)

    index: int
    field_name: str | None
    signer_common_name: str | None
    signature_type: str | None
    signature_validation: str
    certificate_validation: str
    total_document_signed: bool | None

    @property
    def valid(self) -> bool:
        return self.signature_validation == "Signature is Valid."

    @property
    def trusted(self) -> bool:
        return self.certificate_validation == "Certificate is Trusted."

    @property
    def digest_mismatch(self) -> bool:
        return self.signature_validation == "Digest Mismatch."


class PdfsigReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    signatures: list[PdfsigSignature]
    output: str

    @property
    def all_valid_and_trusted(self) -> bool:
        return bool(self.signatures) and all(s.valid and s.trusted for s in self.signatures)


def pdfsig_available() -> bool:
    return shutil.which("pdfsig") is not None and shutil.which("certutil") is not None


_SIG_HEADER = re.compile(r"^Signature #(\d+):\s*$")
_FIELD = re.compile(r"^\s*-\s*([^:]+):\s*(.*)$")


def parse_pdfsig_output(output: str) -> list[PdfsigSignature]:
    """The signatures described by `pdfsig` output (poppler 22.12 wording)."""
    found: list[dict[str, Any]] = []
    for line in output.splitlines():
        header = _SIG_HEADER.match(line)
        if header:
            found.append({"index": int(header.group(1)), "total": None})
            continue
        if not found:
            continue
        current = found[-1]
        stripped = line.strip().lstrip("- ").strip()
        if stripped == "Total document signed":
            current["total"] = True
        elif stripped == "Not total document signed":
            current["total"] = False
        field = _FIELD.match(line)
        if field:
            current[field.group(1).strip()] = field.group(2).strip()
    return [
        PdfsigSignature(
            index=f["index"],
            field_name=f.get("Signature Field Name"),
            signer_common_name=f.get("Signer Certificate Common Name"),
            signature_type=f.get("Signature Type"),
            signature_validation=f.get("Signature Validation", ""),
            certificate_validation=f.get("Certificate Validation", ""),
            total_document_signed=f["total"],
        )
        for f in found
    ]


def pdfsig_verify(path: Path, ca_pem: Path) -> PdfsigReport:
    """Verify a PDF with poppler's `pdfsig`, trusting only `ca_pem` (in a throw-away NSS db).

    Blocking (subprocesses): call it through `asyncio.to_thread` from async code.
    """
    if not pdfsig_available():
        raise PdfsigUnavailable("install poppler-utils and libnss3-tools for pdfsig and certutil")
    with tempfile.TemporaryDirectory(prefix="mutualis-nss-") as nss:
        db = f"sql:{nss}"
        subprocess.run(
            ["certutil", "-N", "-d", db, "--empty-password"], check=True, capture_output=True
        )
        subprocess.run(
            [
                "certutil",
                "-A",
                "-d",
                db,
                "-n",
                "mutualis-trust-anchor",
                "-t",
                "CT,C,C",
                "-i",
                str(ca_pem),
            ],
            check=True,
            capture_output=True,
        )
        # pdfsig exits non-zero when a signature is invalid; the verdict is in the text.
        result = subprocess.run(
            ["pdfsig", "-nssdir", db, str(path)], capture_output=True, text=True
        )
    output = result.stdout + result.stderr
    return PdfsigReport(signatures=parse_pdfsig_output(output), output=output)
