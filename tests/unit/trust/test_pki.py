"""The development PKI issues certificates fit for PAdES seals, agent signatures and a TSA."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mutualis_trust.pki import DevPki, PkiError, agent_cert_name, seal_cert_name


def _spki() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _org(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value)


def _cn(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def test_the_root_ca_is_a_ca_that_only_signs_certificates(tmp_path: Path) -> None:
    pki = DevPki.create(tmp_path)
    bc = pki.ca_cert.extensions.get_extension_for_class(x509.BasicConstraints)
    ku = pki.ca_cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert bc.critical
    assert bc.value.ca
    assert ku.key_cert_sign
    assert ku.crl_sign
    assert not ku.digital_signature


def test_a_seal_certificate_names_the_tenant_and_allows_non_repudiation(tmp_path: Path) -> None:
    pki = DevPki.create(tmp_path)
    spki = _spki()
    cert = pki.issue_seal_certificate(spki, tenant_id="lyon", tenant_name="Ville de Lyon")
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert _org(cert) == "Ville de Lyon"
    assert "Ville de Lyon" in _cn(cert)
    assert ku.critical
    assert ku.value.digital_signature
    assert ku.value.content_commitment
    assert not ku.value.key_cert_sign
    assert cert.issuer == pki.ca_cert.subject
    assert (
        cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        == spki
    )
    cert.verify_directly_issued_by(pki.ca_cert)


def test_an_agent_certificate_carries_the_display_name_and_the_tenant(tmp_path: Path) -> None:
    pki = DevPki.create(tmp_path)
    cert = pki.issue_agent_certificate(
        _spki(),
        tenant_id="lyon",
        tenant_name="Ville de Lyon",
        subject_id="u-1",
        display_name="Alice Martin",
    )
    assert _cn(cert) == "Alice Martin"
    assert _org(cert) == "Ville de Lyon"
    assert pki.certificate(agent_cert_name("lyon", "u-1")) == cert


def test_the_tsa_certificate_is_restricted_to_timestamping(tmp_path: Path) -> None:
    tsa = DevPki.create(tmp_path).tsa_cert
    eku = tsa.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert eku.critical
    assert list(eku.value) == [ExtendedKeyUsageOID.TIME_STAMPING]


def test_a_pki_reloads_from_its_directory_and_is_never_overwritten(tmp_path: Path) -> None:
    created = DevPki.create(tmp_path)
    created.issue_seal_certificate(_spki(), tenant_id="t", tenant_name="T")
    loaded = DevPki.load(tmp_path)
    assert loaded.ca_cert == created.ca_cert
    assert loaded.certificate(seal_cert_name("t")) is not None
    assert DevPki.load_or_create(tmp_path).ca_cert == created.ca_cert
    with pytest.raises(PkiError, match="already exists"):
        DevPki.create(tmp_path)


def test_loading_a_missing_pki_says_how_to_create_one(tmp_path: Path) -> None:
    with pytest.raises(PkiError, match="pki init"):
        DevPki.load(tmp_path / "nowhere")


def test_private_keys_on_disk_are_readable_by_the_owner_only(tmp_path: Path) -> None:
    DevPki.create(tmp_path)
    for name in ("ca.key.pem", "tsa.key.pem"):
        assert (tmp_path / name).stat().st_mode & 0o077 == 0


def test_file_names_of_ids_with_unsafe_characters_stay_distinct() -> None:
    assert seal_cert_name("a/b") != seal_cert_name("a_b")
    assert "/" not in agent_cert_name("t", "../../etc")
