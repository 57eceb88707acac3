"""The parapheur's signer signs several folders at once through one token, and every
signature still validates (pyHanko, then poppler's pdfsig: skipped without it, failed on CI)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from mutualis_trust.pades import pdfsig_verify, validate_pdf
from mutualis_trust.testing import TrustEnv, minimal_pdf, require_pdfsig
from parapheur.service_layer.ports import DocumentSigner, SignatureRequest


def _request(index: int, signer: str, kind: str = "signature") -> SignatureRequest:
    return SignatureRequest(
        tenant="bordeaux",
        folder_id=f"folder-{index}",
        title=f"Arrêté {index}",
        step=0,
        kind="seal" if kind == "seal" else "signature",
        signer=signer,
        on_behalf_of=None,
        reason="Signé.",
        location="Bordeaux",
        field_name=f"Sig1-Step1-{kind}",
    )


async def test_signatures_made_at_once_through_one_token_all_validate(
    signer: DocumentSigner, trust_env: TrustEnv, tmp_path: Path
) -> None:
    # Two first signatures by one new agent race to create the key; the seal and a second
    # agent sign meanwhile.
    requests = [
        _request(0, "concurrent-ann"),
        _request(1, "concurrent-ann"),
        _request(2, "concurrent-ben"),
        _request(3, "bordeaux", "seal"),
        _request(4, "concurrent-ben"),
        _request(5, "concurrent-ann"),
    ]
    pdfs = []
    for index, _ in enumerate(requests):
        source = tmp_path / f"in-{index}.pdf"
        source.write_bytes(minimal_pdf(f"Document {index}"))
        pdfs.append((source, tmp_path / f"out-{index}.pdf"))

    applied = await asyncio.gather(
        *(signer.sign(request, *pdf) for request, pdf in zip(requests, pdfs, strict=True))
    )

    assert [a.level for a in applied] == ["B-T"] * len(requests)
    assert applied[0].certificate_sha256 == applied[1].certificate_sha256
    assert applied[0].certificate_sha256 != applied[2].certificate_sha256
    for _, signed in pdfs:
        report = await validate_pdf(signed, [trust_env.pki.ca_pem_path])
        assert report.all_ok, report
    require_pdfsig()
    for _, signed in pdfs:
        checked = await asyncio.to_thread(pdfsig_verify, signed, trust_env.pki.ca_pem_path)
        assert checked.all_valid_and_trusted, checked.output


async def test_a_large_pdf_is_signed_from_file_to_file(
    signer: DocumentSigner, trust_env: TrustEnv, tmp_path: Path
) -> None:
    # sign_pdf refuses an output pyHanko could not sign into directly (a write-only file would
    # make it build the whole signed PDF in memory), so this passing means file to file.
    source, target = tmp_path / "large.pdf", tmp_path / "large-signed.pdf"
    source.write_bytes(minimal_pdf("Dossier volumineux", padding_bytes=8 * 1024 * 1024))

    applied = await signer.sign(_request(0, "bordeaux", "seal"), source, target)

    original = source.read_bytes()
    with target.open("rb") as signed:
        assert signed.read(len(original)) == original  # an incremental update: bytes kept
        assert signed.read(1)  # ... and the new revision after them
    assert applied.level == "B-T"
    report = await validate_pdf(target, [trust_env.pki.ca_pem_path])
    assert report.all_ok, report
