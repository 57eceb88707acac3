"""Signing identities: who signs with which token key and which certificate.

Owns the naming rule tying a tenant seal or an agent to a PKCS#11 key label and a certificate
file, and the "certificate on first signature" flow: generate the key in the token, have the dev
CA certify its public key, return a pyHanko signer. Services (parapheur, archive) go through
`SigningIdentities` rather than the token and the PKI separately.

Signers are built once per identity and reused: building one costs a certificate file read and
parse plus several token searches, and a signing service asks for the same few identities all
day. A certificate re-issued on disk (another process, a restored PKI directory) is noticed by
its file's modification time and size, and the signer is built again.

Given a `TrustMetrics`, every certificate loaded or issued here reports its end of validity
(the `SigningCertificateExpiringSoon` alert): each tenant seal under its key label, and the
agents of a tenant as one series holding the earliest expiry among those who signed since the
process started (a series per agent would be one per person).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import NamedTuple, Protocol

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pyhanko.sign.pkcs11 import PKCS11Signer
from pyhanko.sign.signers import Signer

from mutualis_trust.metrics import AGENT_CERTIFICATES, TrustMetrics
from mutualis_trust.pkcs11 import Token, TokenConfig, software_signer
from mutualis_trust.pki import DevPki, agent_cert_name, seal_cert_name

SEAL_PREFIX = "seal-"


def _matches(cert: x509.Certificate | None, token: Token, label: str) -> bool:
    # A certificate on disk is reused only if it certifies the key the token holds now (a
    # re-initialised token or a restored PKI directory must not pair a key with a stranger's
    # certificate).
    if cert is None or not token.has_key(label):
        return False
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return spki == token.public_key(label)


def common_name(cert: x509.Certificate) -> str | None:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else None


class _CachedSigner(NamedTuple):
    #: (mtime_ns, size) of the certificate file the signer was built from.
    stamp: tuple[int, int]
    #: The name the certificate gives its holder.
    common_name: str | None
    signer: PKCS11Signer


def tenant_of(cert: x509.Certificate) -> str | None:
    """The tenant a dev-PKI seal or agent certificate belongs to (its OU)."""
    units = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    return str(units[0].value) if units else None


class CertificateExpiries:
    """Tells a service's metrics when the certificates it signs with stop being valid."""

    def __init__(self, metrics: TrustMetrics | None) -> None:
        self._metrics = metrics
        self._lock = threading.Lock()
        self._agents: dict[str, dict[str, datetime]] = {}

    def seen(self, label: str, tenant: str, cert: x509.Certificate) -> None:
        if self._metrics is None:
            return
        not_after = cert.not_valid_after_utc
        if label.startswith(SEAL_PREFIX):
            self._metrics.signing_certificate(label, tenant, not_after)
            return
        with self._lock:
            agents = self._agents.setdefault(tenant, {})
            agents[label] = not_after
            earliest = min(agents.values())
        self._metrics.signing_certificate(AGENT_CERTIFICATES, tenant, earliest)

    def seals_in(self, pki: DevPki) -> None:
        """Report every seal certificate of the PKI directory (at a service's start, so that
        the alert does not wait for a tenant's next seal)."""
        if self._metrics is None:
            return
        for path in sorted(pki.certs_dir.glob(f"{SEAL_PREFIX}*.pem")):
            cert = x509.load_pem_x509_certificate(path.read_bytes())
            tenant = tenant_of(cert)
            if tenant is not None:
                self.seen(path.stem, tenant, cert)


def _file_stamp(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return (stat.st_mtime_ns, stat.st_size)


@dataclass
class SigningIdentities:
    """Seal and agent signers of every tenant, backed by one token and the dev PKI.

    Thread-safe: signers may be asked for from worker threads. A returned signer may be used by
    several signatures at once; its only token operation while signing is `C_Sign`, which
    python-pkcs11 serialises per session.
    """

    pki: DevPki
    token: Token
    metrics: TrustMetrics | None = None
    # Two first signatures by the same agent at once must not create two keys.
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _signers: dict[str, _CachedSigner] = field(default_factory=dict, repr=False)
    _expiries: CertificateExpiries = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._expiries = CertificateExpiries(self.metrics)

    def report_certificates(self) -> None:
        """Report the seal certificates already issued (call once, at the service's start)."""
        self._expiries.seals_in(self.pki)

    def seal_certificate(self, tenant_id: str, tenant_name: str) -> x509.Certificate:
        """The tenant's seal certificate, creating key and certificate on first use."""
        label = seal_cert_name(tenant_id)
        with self._lock:
            cert = self.pki.certificate(label)
            if cert is None or not _matches(cert, self.token, label):
                public = self.token.ensure_key(label)
                cert = self.pki.issue_seal_certificate(
                    public, tenant_id=tenant_id, tenant_name=tenant_name
                )
        self._expiries.seen(label, tenant_id, cert)
        return cert

    def provision_seals(self, tenants: Iterable[tuple[str, str]]) -> list[x509.Certificate]:
        """Each tenant's seal, `(tenant id, tenant name)`: key generated in the token and
        certificate issued where missing (what `mutualis pki init` does), kept otherwise."""
        return [self.seal_certificate(tenant_id, name) for tenant_id, name in tenants]

    def agent_certificate(
        self, tenant_id: str, tenant_name: str, subject_id: str, display_name: str
    ) -> x509.Certificate:
        """An agent's certificate, creating key and certificate on their first signature.

        `display_name` may be a pseudonym: the certificate is what a verifier shows. A
        certificate naming them otherwise (their name changed, or it was issued before identity
        gave their name) is issued again for the same key.
        """
        label = agent_cert_name(tenant_id, subject_id)
        with self._lock:
            cert = self.pki.certificate(label)
            if (
                cert is None
                or not _matches(cert, self.token, label)
                or common_name(cert) != display_name
            ):
                public = self.token.ensure_key(label)
                cert = self.pki.issue_agent_certificate(
                    public,
                    tenant_id=tenant_id,
                    tenant_name=tenant_name,
                    subject_id=subject_id,
                    display_name=display_name,
                )
        self._expiries.seen(label, tenant_id, cert)
        return cert

    def seal_signer(self, tenant_id: str, tenant_name: str) -> PKCS11Signer:
        label = seal_cert_name(tenant_id)
        return self._signer(label, lambda: self.seal_certificate(tenant_id, tenant_name))

    def agent_signer(
        self, tenant_id: str, tenant_name: str, subject_id: str, display_name: str
    ) -> PKCS11Signer:
        label = agent_cert_name(tenant_id, subject_id)
        return self._signer(
            label,
            lambda: self.agent_certificate(tenant_id, tenant_name, subject_id, display_name),
            display_name,
        )

    def _signer(
        self,
        label: str,
        certificate: Callable[[], x509.Certificate],
        holder: str | None = None,
    ) -> PKCS11Signer:
        cert_path = self.pki.certs_dir / f"{label}.pem"
        cached = self._signers.get(label)
        if (
            cached is not None
            and cached.stamp == _file_stamp(cert_path)
            and (holder is None or cached.common_name == holder)
        ):
            return cached.signer
        cert = certificate()
        signer = self.token.signer(label, cert, [self.pki.ca_cert])
        # Find the key handle now (pyHanko would otherwise do it lazily, on the event loop,
        # the first time the signer's certificate is read).
        _ = signer.signing_cert
        stamp = _file_stamp(cert_path)
        if stamp is not None:
            with self._lock:
                self._signers[label] = _CachedSigner(stamp, common_name(cert), signer)
        return signer


def provision_seals(
    pki: DevPki, token: TokenConfig, tenants: Iterable[tuple[str, str]]
) -> list[x509.Certificate]:
    """`mutualis pki init`'s seals: for each `(tenant id, tenant name)`, a key generated inside
    the token and a seal certificate from the dev CA, unless they exist already (idempotent).

    Done once, before the services start, rather than on each tenant's first seal: two
    instances sealing for the first time at once would each create a key under one label, and
    the certificate's expiry can be watched from the first day.
    """
    with Token.open(token) as opened:
        return SigningIdentities(pki, opened).provision_seals(tenants)


class Identities(Protocol):
    """What a signing service needs: a seal signer per tenant, a signer per agent, the PKI."""

    pki: DevPki

    def seal_signer(self, tenant_id: str, tenant_name: str) -> Signer: ...

    def agent_signer(
        self, tenant_id: str, tenant_name: str, subject_id: str, display_name: str
    ) -> Signer: ...


@dataclass
class SoftwareIdentities:
    """The dev-mode fallback when no PKCS#11 module exists: keys as files beside the dev PKI.

    Allowed only where `software_fallback_allowed(dev_mode=True)` said yes (which logs a loud
    warning); production refuses to start signing without a token.
    """

    pki: DevPki
    metrics: TrustMetrics | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _expiries: CertificateExpiries = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._expiries = CertificateExpiries(self.metrics)

    def report_certificates(self) -> None:
        self._expiries.seals_in(self.pki)

    @property
    def key_dir(self) -> Path:
        return self.pki.dir / "software-keys"

    def _key(self, label: str) -> tuple[bytes, bytes]:
        """(private key PEM, public SubjectPublicKeyInfo DER), created the first time."""
        path = self.key_dir / f"{label}.key.pem"
        if not path.exists():
            self.key_dir.mkdir(parents=True, exist_ok=True)
            pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(pem)
        pem = path.read_bytes()
        key = serialization.load_pem_private_key(pem, password=None)
        spki = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return pem, spki

    def _certificate(
        self,
        label: str,
        spki: bytes,
        issue: Callable[[], x509.Certificate],
        holder: str | None = None,
    ) -> x509.Certificate:
        cert = self.pki.certificate(label)
        if (
            cert is None
            or cert.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            != spki
            or (holder is not None and common_name(cert) != holder)
        ):
            cert = issue()
        return cert

    def seal_signer(self, tenant_id: str, tenant_name: str) -> Signer:
        label = seal_cert_name(tenant_id)
        with self._lock:
            pem, spki = self._key(label)
            cert = self._certificate(
                label,
                spki,
                lambda: self.pki.issue_seal_certificate(
                    spki, tenant_id=tenant_id, tenant_name=tenant_name
                ),
            )
        self._expiries.seen(label, tenant_id, cert)
        return software_signer(pem, cert, [self.pki.ca_cert])

    def agent_signer(
        self, tenant_id: str, tenant_name: str, subject_id: str, display_name: str
    ) -> Signer:
        label = agent_cert_name(tenant_id, subject_id)
        with self._lock:
            pem, spki = self._key(label)
            cert = self._certificate(
                label,
                spki,
                lambda: self.pki.issue_agent_certificate(
                    spki,
                    tenant_id=tenant_id,
                    tenant_name=tenant_name,
                    subject_id=subject_id,
                    display_name=display_name,
                ),
                display_name,
            )
        self._expiries.seen(label, tenant_id, cert)
        return software_signer(pem, cert, [self.pki.ca_cert])
