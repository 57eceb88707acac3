"""Keys are generated inside the SoftHSM token and never leave it; the CA certifies them there."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from mutualis_kernel.tenants import default_tenants
from mutualis_trust.identities import SigningIdentities, provision_seals
from mutualis_trust.pkcs11 import SoftHsm, Token, to_asn1
from mutualis_trust.pki import DevPki, agent_cert_name, seal_cert_name
from mutualis_trust.testing import TrustEnv


def _spki(cert: object) -> bytes:
    return cert.public_key().public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_private_keys_are_sensitive_and_not_extractable(trust_env: TrustEnv) -> None:
    with Token.open(trust_env.token) as token:
        token.ensure_key("pkcs11-test-key")
        assert token.private_key_attributes("pkcs11-test-key") == {
            "sensitive": True,
            "extractable": False,
        }


def test_a_tenant_seal_is_created_once_and_certified_for_the_token_key(
    trust_env: TrustEnv,
) -> None:
    with Token.open(trust_env.token) as token:
        identities = SigningIdentities(trust_env.pki, token)
        first = identities.seal_certificate("seal-test", "Commune A")
        again = identities.seal_certificate("seal-test", "Commune A")
        assert first == again
        assert _spki(first) == token.public_key(seal_cert_name("seal-test"))


def test_an_agent_gets_a_certificate_on_first_signature(trust_env: TrustEnv) -> None:
    with Token.open(trust_env.token) as token:
        identities = SigningIdentities(trust_env.pki, token)
        assert trust_env.pki.certificate(agent_cert_name("t", "first-use")) is None
        signer = identities.agent_signer("t", "Commune A", "first-use", "Bob Durand")
        assert signer.signing_cert is not None
        assert signer.signing_cert.subject.native["common_name"] == "Bob Durand"


def test_provisioning_is_idempotent(trust_env: TrustEnv) -> None:
    conf = trust_env.token.softhsm2_conf
    assert conf is not None
    again = SoftHsm.provision(conf.parent, trust_env.token.token_label, "1234", "12345678")
    assert again.token_label == trust_env.token.token_label


def test_a_signer_is_reused_until_its_certificate_is_issued_again(trust_env: TrustEnv) -> None:
    with Token.open(trust_env.token) as token:
        identities = SigningIdentities(trust_env.pki, token)
        first = identities.agent_signer("t", "Commune", "reissued", "Agent A")
        assert identities.agent_signer("t", "Commune", "reissued", "Agent A") is first
        label = agent_cert_name("t", "reissued")
        renewed = trust_env.pki.issue_agent_certificate(
            token.public_key(label),
            tenant_id="t",
            tenant_name="Commune",
            subject_id="reissued",
            display_name="Agent A",
        )
        again = identities.agent_signer("t", "Commune", "reissued", "Agent A")
        assert again is not first
        assert again.signing_cert.dump() == to_asn1(renewed).dump()


def test_an_agent_whose_name_changed_gets_a_certificate_naming_them_for_the_same_key(
    trust_env: TrustEnv,
) -> None:
    with Token.open(trust_env.token) as token:
        identities = SigningIdentities(trust_env.pki, token)
        # Issued before identity gave the name: the certificate named the user id.
        before = identities.agent_signer("t", "Commune", "u-renamed", "u-renamed")
        named = identities.agent_signer("t", "Commune", "u-renamed", "Claire Petit")
        assert named is not before
        assert named.signing_cert.subject.native["common_name"] == "Claire Petit"
        assert identities.agent_signer("t", "Commune", "u-renamed", "Claire Petit") is named
        key = token.public_key(agent_cert_name("t", "u-renamed"))
        assert named.signing_cert.public_key.dump() == before.signing_cert.public_key.dump()
        assert _spki(trust_env.pki.certificate(agent_cert_name("t", "u-renamed"))) == key


def test_every_tenants_seal_is_provisioned_with_its_key_in_the_token_once(
    trust_env: TrustEnv, tmp_path: Path
) -> None:
    pki = DevPki.create(tmp_path / "pki")
    tenants = [(t.slug, t.name) for t in default_tenants().tenants]
    first = provision_seals(pki, trust_env.token, tenants)
    again = provision_seals(pki, trust_env.token, tenants)
    assert again == first  # idempotent: nothing issued twice
    assert len(first) == len(tenants) > 1
    with Token.open(trust_env.token) as token:
        for (slug, name), cert in zip(tenants, first, strict=True):
            label = seal_cert_name(slug)
            assert pki.certificate(label) == cert
            assert _spki(cert) == token.public_key(label)  # certified for the token's key
            assert token.private_key_attributes(label) == {"sensitive": True, "extractable": False}
            assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == (
                f"Cachet serveur {name}"
            )
