"""PDFs signed through the token validate with two independent verifiers: pyHanko and pdfsig.

A seal (B-T) then an agent's signature (B-T) on the same document: both stay valid, both are
trusted through the dev CA, both carry a valid timestamp; a flipped byte is caught.
"""

from __future__ import annotations

import asyncio
import io
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from mutualis_trust.identities import SigningIdentities
from mutualis_trust.pades import (
    InvalidPdf,
    PadesError,
    http_timestamper,
    pdfsig_verify,
    sign_pdf,
    validate_pdf,
)
from mutualis_trust.pkcs11 import Token
from mutualis_trust.pki import DevPki
from mutualis_trust.testing import TrustEnv, encrypted_pdf, minimal_pdf

needs_pdfsig = pytest.mark.usefixtures("pdfsig")


SignedPdfFactory = Callable[[], Awaitable[Path]]


@pytest.fixture
def two_signatures(trust_env: TrustEnv, tmp_path: Path) -> SignedPdfFactory:
    """Builds a PDF sealed by the tenant then signed by an agent, both PAdES B-T.

    A factory because the fixture is synchronous and signing is async (pytest-asyncio loops
    are per test here).
    """

    async def build() -> Path:
        source, sealed, signed = (
            tmp_path / "in.pdf",
            tmp_path / "sealed.pdf",
            tmp_path / "signed.pdf",
        )
        source.write_bytes(minimal_pdf("Arrete 2026-042"))
        with Token.open(trust_env.token) as token:
            identities = SigningIdentities(trust_env.pki, token)
            seal = identities.seal_signer("pades", "Ville de Test")
            agent = identities.agent_signer("pades", "Ville de Test", "u-7", "Claire Petit")
            with source.open("rb") as i, sealed.open("w+b") as o:
                await sign_pdf(
                    i,
                    o,
                    seal,
                    field_name="step-1",
                    level="B-T",
                    tsa_url=trust_env.tsa_url,
                    reason="Cachet",
                    location="Lyon",
                )
            with sealed.open("rb") as i, signed.open("w+b") as o:
                await sign_pdf(
                    i,
                    o,
                    agent,
                    field_name="step-2",
                    level="B-T",
                    tsa_url=trust_env.tsa_url,
                    reason="Signature du maire",
                    visible_stamp=True,
                )
        return signed

    return build


async def test_pyhanko_finds_both_signatures_intact_valid_trusted_and_timestamped(
    trust_env: TrustEnv, two_signatures: SignedPdfFactory
) -> None:
    path = await two_signatures()
    report = await validate_pdf(path, [trust_env.pki.ca_pem_path])
    assert [s.field_name for s in report.signatures] == ["step-1", "step-2"]
    for check in report.signatures:
        assert check.intact
        assert check.valid
        assert check.trusted
        assert check.timestamp_valid is True
        assert check.later_changes_allowed is not False
    seal, agent = report.signatures
    assert seal.signer == "Cachet serveur Ville de Test"
    assert seal.signer_organization == "Ville de Test"
    assert agent.signer == "Claire Petit"
    assert not seal.covers_whole_document
    assert agent.covers_whole_document
    assert report.all_ok


@needs_pdfsig
async def test_pdfsig_says_both_signatures_are_valid_and_trusted(
    trust_env: TrustEnv, two_signatures: SignedPdfFactory
) -> None:
    path = await two_signatures()
    report = await asyncio.to_thread(pdfsig_verify, path, trust_env.pki.ca_pem_path)
    assert len(report.signatures) == 2, report.output
    assert report.all_valid_and_trusted, report.output
    assert report.signatures[1].total_document_signed is True


@needs_pdfsig
async def test_a_flipped_byte_is_a_digest_mismatch(
    trust_env: TrustEnv, two_signatures: SignedPdfFactory, tmp_path: Path
) -> None:
    path = await two_signatures()
    data = bytearray(path.read_bytes())
    at = data.find(b"Arrete 2026-042")
    data[at] ^= 0x01
    tampered = tmp_path / "tampered.pdf"
    tampered.write_bytes(bytes(data))
    pdfsig = await asyncio.to_thread(pdfsig_verify, tampered, trust_env.pki.ca_pem_path)
    assert all(s.digest_mismatch for s in pdfsig.signatures), pdfsig.output
    report = await validate_pdf(tampered, [trust_env.pki.ca_pem_path])
    assert not any(s.intact for s in report.signatures)


@needs_pdfsig
async def test_a_signature_from_an_unknown_ca_is_not_trusted(
    trust_env: TrustEnv, two_signatures: SignedPdfFactory, tmp_path: Path
) -> None:
    path = await two_signatures()
    stranger = DevPki.create(tmp_path / "stranger")
    pdfsig = await asyncio.to_thread(pdfsig_verify, path, stranger.ca_pem_path)
    assert pdfsig.signatures
    assert not any(s.trusted for s in pdfsig.signatures)
    report = await validate_pdf(path, [stranger.ca_pem_path])
    assert not any(s.trusted for s in report.signatures)


async def test_b_lta_adds_a_document_timestamp_that_validates(
    trust_env: TrustEnv, two_signatures: SignedPdfFactory, tmp_path: Path
) -> None:
    path = await two_signatures()
    out = tmp_path / "lta.pdf"
    with Token.open(trust_env.token) as token:
        seal = SigningIdentities(trust_env.pki, token).seal_signer("pades", "Ville de Test")
        with path.open("rb") as i, out.open("w+b") as o:
            await sign_pdf(
                i,
                o,
                seal,
                field_name="step-3",
                level="B-LTA",
                tsa_url=trust_env.tsa_url,
                trust_roots=[trust_env.pki.ca_pem_path],
            )
    report = await validate_pdf(out, [trust_env.pki.ca_pem_path])
    kinds = [s.kind for s in report.signatures]
    assert kinds.count("signature") == 3
    assert kinds.count("document_timestamp") == 1
    assert report.all_ok, [s.summary for s in report.signatures]


async def test_b_t_without_a_tsa_and_encrypted_input_are_refused(trust_env: TrustEnv) -> None:
    with Token.open(trust_env.token) as token:
        seal = SigningIdentities(trust_env.pki, token).seal_signer("pades", "Ville de Test")
        with pytest.raises(PadesError, match="timestamp authority"):
            await sign_pdf(io.BytesIO(minimal_pdf()), io.BytesIO(), seal, field_name="s")
        with pytest.raises(InvalidPdf, match="encrypted"):
            await sign_pdf(
                io.BytesIO(encrypted_pdf()), io.BytesIO(), seal, field_name="s", level="B-B"
            )


async def test_the_signing_time_reported_is_the_timestamps_and_a_b_b_has_none(
    trust_env: TrustEnv, tmp_path: Path
) -> None:
    with Token.open(trust_env.token) as token:
        seal = SigningIdentities(trust_env.pki, token).seal_signer("pades", "Ville de Test")
        stamped, plain = io.BytesIO(), io.BytesIO()
        b_t = await sign_pdf(
            io.BytesIO(minimal_pdf()), stamped, seal, field_name="s", tsa_url=trust_env.tsa_url
        )
        b_b = await sign_pdf(io.BytesIO(minimal_pdf()), plain, seal, field_name="s", level="B-B")
    path = tmp_path / "b-t.pdf"
    path.write_bytes(stamped.getvalue())
    (checked,) = (await validate_pdf(path, [trust_env.pki.ca_pem_path])).signatures
    assert b_t.timestamp_time is not None
    assert b_t.timestamp_time == checked.timestamp_time  # the TSA's genTime, read back
    assert b_b.timestamp_time is None
    assert b_b.signing_time.tzinfo is not None


async def test_a_write_only_output_is_refused_before_anything_is_signed(
    trust_env: TrustEnv, tmp_path: Path
) -> None:
    # pyHanko would sign into an in-memory copy of the whole document and copy it out at the
    # end: a large PDF would sit in memory whole.
    out = tmp_path / "signed.pdf"
    with Token.open(trust_env.token) as token, out.open("wb") as write_only:
        seal = SigningIdentities(trust_env.pki, token).seal_signer("pades", "Ville de Test")
        with pytest.raises(ValueError, match="w\\+b"):
            await sign_pdf(io.BytesIO(minimal_pdf()), write_only, seal, field_name="s", level="B-B")
    assert out.stat().st_size == 0


async def test_an_unreachable_tsa_is_a_signing_error(trust_env: TrustEnv) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with Token.open(trust_env.token) as token:
        seal = SigningIdentities(trust_env.pki, token).seal_signer("pades", "Ville de Test")
        with pytest.raises(PadesError, match="unreachable"):
            await sign_pdf(
                io.BytesIO(minimal_pdf()),
                io.BytesIO(),
                seal,
                field_name="s",
                timestamper=http_timestamper(f"http://127.0.0.1:{port}/tsa", timeout=5),
            )
