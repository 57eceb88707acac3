"""The dev-mode fallback without any PKCS#11 module: software keys, the same signatures."""

from io import BytesIO
from pathlib import Path

from mutualis_trust.identities import SoftwareIdentities
from mutualis_trust.pades import sign_pdf, validate_pdf
from mutualis_trust.pkcs11 import software_fallback_allowed
from mutualis_trust.pki import DevPki
from mutualis_trust.testing import TrustEnv, minimal_pdf


def test_the_fallback_is_refused_outside_dev_mode(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-module.so"
    assert software_fallback_allowed(dev_mode=False, module_path=missing) is False
    assert software_fallback_allowed(dev_mode=True, module_path=missing) is True


async def test_software_keys_sign_a_seal_and_an_agent_signature_that_validate(
    trust_env: TrustEnv, tmp_path: Path
) -> None:
    pki = DevPki.load_or_create(tmp_path / "pki")
    identities = SoftwareIdentities(pki)
    first, second = BytesIO(), BytesIO()
    await sign_pdf(
        BytesIO(minimal_pdf("fallback")),
        first,
        identities.agent_signer("pessac", "Pessac", "u-1", "Agent de test"),
        field_name="Signature1",
        level="B-T",
        tsa_url=trust_env.tsa_url,
    )
    first.seek(0)
    await sign_pdf(
        first,
        second,
        identities.seal_signer("pessac", "Pessac"),
        field_name="Seal1",
        level="B-T",
        tsa_url=trust_env.tsa_url,
    )
    signed = tmp_path / "signed.pdf"
    signed.write_bytes(second.getvalue())
    report = await validate_pdf(signed, [pki.ca_pem_path])
    assert len(report.signatures) == 2
    assert all(s.intact and s.valid and s.trusted for s in report.signatures)
    # The same key (and certificate) is used again for the same agent.
    key_files = sorted(p.name for p in identities.key_dir.iterdir())
    identities.agent_signer("pessac", "Pessac", "u-1", "Agent de test")
    assert sorted(p.name for p in identities.key_dir.iterdir()) == key_files
    assert (identities.key_dir / key_files[0]).stat().st_mode & 0o077 == 0
