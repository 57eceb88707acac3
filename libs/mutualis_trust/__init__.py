"""Mutualis trust infrastructure: dev PKI, PKCS#11 keys, RFC 3161 timestamps, PAdES.

Shared by the parapheur (signatures and seals on PDFs) and the archive (timestamped journal
seals). Public API, stable across services:

- `pki`: `DevPki.create/load/load_or_create(dir)`, `issue_seal_certificate`,
  `issue_agent_certificate`, `certificate(name)`, `ca_pem_path`, `tsa_cert_path`;
  `seal_cert_name(tenant_id)`, `agent_cert_name(tenant_id, subject_id)`.
- `pkcs11`: `TokenConfig`, `SoftHsm.provision(dir, label, pin, so_pin)`, `Token.open(config)` /
  `Token.connect(config)` with `generate_key`, `ensure_key`, `public_key`, `signer`;
  `software_fallback_allowed(dev_mode)`, `softhsm_available()`, `SOFTHSM_MISSING`.
- `identities`: `SigningIdentities(pki, token, metrics).seal_signer(...)` / `.agent_signer(...)`,
  `.report_certificates()`, `.provision_seals(tenants)`; `provision_seals(pki, token_config,
  tenants)` (what `mutualis pki init` needs: every tenant's seal, keys made in the token).
- `metrics`: `TrustMetrics`, what a service's `DomainMetrics` receives (timestamp requests,
  certificate expiry).
- `tsa`: `DevTsa.running(pki)`, `timestamp(url, data)`, `verify_timestamp(token, data, ca_pem)`,
  `TimestampToken`.
- `pades`: `sign_pdf` (with a reusable `http_timestamper(url)`), `validate_pdf`,
  `pdfsig_verify`, `inspect_pdf`, `InvalidPdf`.
- `testing`: `minimal_pdf()`, `encrypted_pdf()`, the `trust_env` pytest fixture.
"""

from mutualis_trust.identities import SigningIdentities, provision_seals
from mutualis_trust.metrics import TrustMetrics
from mutualis_trust.pades import (
    InvalidPdf,
    PadesError,
    PadesLevel,
    PdfInfo,
    PdfsigReport,
    PdfsigSignature,
    PdfsigUnavailable,
    SignatureCheck,
    SignedPdf,
    ValidationReport,
    http_timestamper,
    inspect_pdf,
    pdfsig_available,
    pdfsig_verify,
    sign_pdf,
    validate_pdf,
    validation_context,
)
from mutualis_trust.pkcs11 import (
    SOFTHSM_MISSING,
    SoftHsm,
    Token,
    TokenConfig,
    TokenError,
    find_softhsm_module,
    softhsm_available,
    software_fallback_allowed,
    software_signer,
)
from mutualis_trust.pki import DevPki, PkiError, agent_cert_name, seal_cert_name
from mutualis_trust.tsa import (
    DevTsa,
    TimestampError,
    TimestampToken,
    TimestampVerificationError,
    timestamp,
    verify_timestamp,
)

__all__ = [
    "SOFTHSM_MISSING",
    "DevPki",
    "DevTsa",
    "InvalidPdf",
    "PadesError",
    "PadesLevel",
    "PdfInfo",
    "PdfsigReport",
    "PdfsigSignature",
    "PdfsigUnavailable",
    "PkiError",
    "SignatureCheck",
    "SignedPdf",
    "SigningIdentities",
    "SoftHsm",
    "TimestampError",
    "TimestampToken",
    "TimestampVerificationError",
    "Token",
    "TokenConfig",
    "TokenError",
    "TrustMetrics",
    "ValidationReport",
    "agent_cert_name",
    "find_softhsm_module",
    "http_timestamper",
    "inspect_pdf",
    "pdfsig_available",
    "pdfsig_verify",
    "provision_seals",
    "seal_cert_name",
    "sign_pdf",
    "softhsm_available",
    "software_fallback_allowed",
    "software_signer",
    "timestamp",
    "validate_pdf",
    "validation_context",
    "verify_timestamp",
]
