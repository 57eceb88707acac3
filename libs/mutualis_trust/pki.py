"""The development PKI: a root CA on disk that certifies keys living in a PKCS#11 token.

Owns the certificate profiles (root CA, tenant seal, agent signing, timestamp authority) and the
layout of a PKI directory. The profile builders are pure functions of keys and names; `DevPki`
adds the files. The root CA key and the dev TSA key are software keys in PEM files: this is a
development PKI, never a production one (production seals and agent keys come from the
operator's own CA and HSM). Seal and agent keys never pass through here: the CA only sees their
public keys, read from the token.

Layout of a PKI directory::

    ca.pem            root CA certificate (the trust anchor: NSS db, pyHanko, openssl -CAfile)
    ca.key.pem        root CA private key (dev only, mode 0600)
    tsa.pem           timestamp authority certificate (EKU critical timeStamping)
    tsa.key.pem       timestamp authority private key (dev only, mode 0600)
    certs/<name>.pem  issued seal and agent certificates (`seal_cert_name`, `agent_cert_name`)
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_VALIDITY = dt.timedelta(days=3650)
SEAL_VALIDITY = dt.timedelta(days=3 * 365)
AGENT_VALIDITY = dt.timedelta(days=2 * 365)
TSA_VALIDITY = dt.timedelta(days=5 * 365)
#: Certificates start a little in the past so that a clock a few minutes behind still accepts them.
BACKDATE = dt.timedelta(minutes=10)

DEFAULT_CA_NAME = "Mutualis Development Root CA"
DEFAULT_ORGANIZATION = "Mutualis (development)"


class PkiError(Exception):
    """The PKI directory is missing, incomplete, or a request cannot be certified."""


# --- pure certificate profiles -------------------------------------------------------------


def _name(common_name: str, organization: str, unit: str | None = None) -> x509.Name:
    attrs = [
        x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
    ]
    if unit:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attrs)


def _signing_key_usage() -> x509.KeyUsage:
    # PAdES signing and sealing certificates: digitalSignature + nonRepudiation
    # (contentCommitment), nothing else.
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=True,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def build_root_ca(
    key: ec.EllipticCurvePrivateKey, *, name: str = DEFAULT_CA_NAME, now: dt.datetime
) -> x509.Certificate:
    """A self-signed root CA certificate for `key` (pathlen 0: it issues end entities only)."""
    subject = _name(name, DEFAULT_ORGANIZATION)
    public = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )


def _end_entity(
    ca_cert: x509.Certificate,
    ca_key: CertificateIssuerPrivateKeyTypes,
    public_key: CertificatePublicKeyTypes,
    subject: x509.Name,
    validity: dt.timedelta,
    now: dt.datetime,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(min(now + validity, ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_cert.public_key()  # type: ignore[arg-type]
            ),
            critical=False,
        )
    )


def build_seal_certificate(
    ca_cert: x509.Certificate,
    ca_key: CertificateIssuerPrivateKeyTypes,
    public_key: CertificatePublicKeyTypes,
    *,
    tenant_id: str,
    tenant_name: str,
    now: dt.datetime,
) -> x509.Certificate:
    """The tenant's server seal ("cachet serveur"): CN=Cachet serveur <tenant>, O=<tenant>."""
    subject = _name(f"Cachet serveur {tenant_name}", tenant_name, unit=tenant_id)
    return (
        _end_entity(ca_cert, ca_key, public_key, subject, SEAL_VALIDITY, now)
        .add_extension(_signing_key_usage(), critical=True)
        .sign(ca_key, hashes.SHA256())
    )


def build_agent_certificate(
    ca_cert: x509.Certificate,
    ca_key: CertificateIssuerPrivateKeyTypes,
    public_key: CertificatePublicKeyTypes,
    *,
    tenant_id: str,
    tenant_name: str,
    display_name: str,
    now: dt.datetime,
) -> x509.Certificate:
    """An agent's personal signing certificate: CN=<display name or pseudonym>, O=<tenant>."""
    subject = _name(display_name, tenant_name, unit=tenant_id)
    return (
        _end_entity(ca_cert, ca_key, public_key, subject, AGENT_VALIDITY, now)
        .add_extension(_signing_key_usage(), critical=True)
        .sign(ca_key, hashes.SHA256())
    )


def build_tsa_certificate(
    ca_cert: x509.Certificate,
    ca_key: CertificateIssuerPrivateKeyTypes,
    public_key: CertificatePublicKeyTypes,
    *,
    name: str = "Mutualis Development TSA",
    now: dt.datetime,
) -> x509.Certificate:
    """A timestamp authority certificate (RFC 3161 requires EKU timeStamping, critical, alone)."""
    return (
        _end_entity(
            ca_cert, ca_key, public_key, _name(name, DEFAULT_ORGANIZATION), TSA_VALIDITY, now
        )
        .add_extension(_signing_key_usage(), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
        .sign(ca_key, hashes.SHA256())
    )


_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def _file_part(value: str) -> str:
    # Names come from tenants and subjects: keep a readable prefix and make them unique by hash
    # so that two ids differing only in unsafe characters never share a file.
    safe = _UNSAFE.sub("_", value)[:40]
    return f"{safe}-{hashlib.sha256(value.encode()).hexdigest()[:8]}"


def seal_cert_name(tenant_id: str) -> str:
    """File stem (and PKCS#11 key label) of a tenant's seal."""
    return f"seal-{_file_part(tenant_id)}"


def agent_cert_name(tenant_id: str, subject_id: str) -> str:
    """File stem (and PKCS#11 key label) of an agent's signing key in a tenant."""
    return f"agent-{_file_part(tenant_id)}-{_file_part(subject_id)}"


def load_public_key_der(spki_der: bytes) -> CertificatePublicKeyTypes:
    """A SubjectPublicKeyInfo (as read from a token) as a key `cryptography` can certify."""
    key = serialization.load_der_public_key(spki_der)
    if not isinstance(key, ec.EllipticCurvePublicKey):
        # Only EC P-256 keys are generated in tokens; anything else is a configuration mistake.
        raise PkiError(f"unexpected public key type {type(key).__name__}")
    return key


# --- the PKI directory ---------------------------------------------------------------------


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class DevPki:
    """A development PKI directory: root CA, dev TSA, and issued seal/agent certificates."""

    dir: Path
    ca_cert: x509.Certificate
    ca_key: ec.EllipticCurvePrivateKey

    @property
    def ca_pem_path(self) -> Path:
        return self.dir / "ca.pem"

    @property
    def tsa_cert_path(self) -> Path:
        return self.dir / "tsa.pem"

    @property
    def tsa_key_path(self) -> Path:
        return self.dir / "tsa.key.pem"

    @property
    def certs_dir(self) -> Path:
        return self.dir / "certs"

    @property
    def tsa_cert(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.tsa_cert_path.read_bytes())

    @classmethod
    def create(cls, directory: Path, *, ca_name: str = DEFAULT_CA_NAME) -> DevPki:
        """Create a new PKI in `directory` (refuses to overwrite an existing CA)."""
        directory = Path(directory)
        if (directory / "ca.pem").exists():
            raise PkiError(f"a PKI already exists in {directory}; use DevPki.load")
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "certs").mkdir(exist_ok=True)
        now = dt.datetime.now(dt.UTC)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_cert = build_root_ca(ca_key, name=ca_name, now=now)
        _write_private(
            directory / "ca.key.pem",
            ca_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )
        (directory / "ca.pem").write_bytes(_pem(ca_cert))
        pki = cls(directory, ca_cert, ca_key)
        pki._create_tsa(now)
        return pki

    @classmethod
    def load(cls, directory: Path) -> DevPki:
        """Load an existing PKI directory."""
        directory = Path(directory)
        try:
            ca_cert = x509.load_pem_x509_certificate((directory / "ca.pem").read_bytes())
            ca_key = serialization.load_pem_private_key(
                (directory / "ca.key.pem").read_bytes(), password=None
            )
        except FileNotFoundError as e:
            raise PkiError(f"no PKI in {directory} (run `mutualis pki init`): {e}") from None
        if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
            raise PkiError(f"{directory}/ca.key.pem is not an EC key")
        (directory / "certs").mkdir(exist_ok=True)
        return cls(directory, ca_cert, ca_key)

    @classmethod
    def load_or_create(cls, directory: Path) -> DevPki:
        """Idempotent set-up for `mutualis pki init` and test fixtures."""
        if (Path(directory) / "ca.pem").exists():
            return cls.load(directory)
        return cls.create(directory)

    def _create_tsa(self, now: dt.datetime) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = build_tsa_certificate(self.ca_cert, self.ca_key, key.public_key(), now=now)
        _write_private(
            self.tsa_key_path,
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )
        self.tsa_cert_path.write_bytes(_pem(cert))

    def _store(self, name: str, cert: x509.Certificate) -> x509.Certificate:
        (self.certs_dir / f"{name}.pem").write_bytes(_pem(cert))
        return cert

    def certificate(self, name: str) -> x509.Certificate | None:
        """An issued certificate by file stem (`seal_cert_name`, `agent_cert_name`), if any."""
        path = self.certs_dir / f"{name}.pem"
        if not path.exists():
            return None
        return x509.load_pem_x509_certificate(path.read_bytes())

    def issue_seal_certificate(
        self, public_key_der: bytes, *, tenant_id: str, tenant_name: str
    ) -> x509.Certificate:
        """Certify a tenant seal key (its SubjectPublicKeyInfo, read from the token)."""
        cert = build_seal_certificate(
            self.ca_cert,
            self.ca_key,
            load_public_key_der(public_key_der),
            tenant_id=tenant_id,
            tenant_name=tenant_name,
            now=dt.datetime.now(dt.UTC),
        )
        return self._store(seal_cert_name(tenant_id), cert)

    def issue_agent_certificate(
        self,
        public_key_der: bytes,
        *,
        tenant_id: str,
        tenant_name: str,
        subject_id: str,
        display_name: str,
    ) -> x509.Certificate:
        """Certify an agent signing key (its SubjectPublicKeyInfo, read from the token)."""
        cert = build_agent_certificate(
            self.ca_cert,
            self.ca_key,
            load_public_key_der(public_key_der),
            tenant_id=tenant_id,
            tenant_name=tenant_name,
            display_name=display_name,
            now=dt.datetime.now(dt.UTC),
        )
        return self._store(agent_cert_name(tenant_id, subject_id), cert)
