"""pdfsig's report is read signature by signature, in poppler's own words."""

from __future__ import annotations

from mutualis_trust.pades import parse_pdfsig_output

OUTPUT = """Digital Signature Info of: signed.pdf
Signature #1:
  - Signature Field Name: step-1
  - Signer Certificate Common Name: Cachet serveur Ville de Lyon
  - Signer full Distinguished Name: CN=Cachet serveur Ville de Lyon,O=Ville de Lyon,C=FR
  - Signing Time: Nov 29 2026 07:17:25
  - Signing Hash Algorithm: SHA-256
  - Signature Type: ETSI.CAdES.detached
  - Signed Ranges: [0 - 2087], [16593 - 17735]
  - Not total document signed
  - Signature Validation: Signature is Valid.
  - Certificate Validation: Certificate is Trusted.
Signature #2:
  - Signature Field Name: step-2
  - Signer Certificate Common Name: Alice Martin
  - Signature Type: ETSI.CAdES.detached
  - Total document signed
  - Signature Validation: Digest Mismatch.
  - Certificate Validation: Certificate issuer isn't Trusted.
"""


def test_each_signature_is_reported_with_its_verdicts() -> None:
    first, second = parse_pdfsig_output(OUTPUT)
    assert first.field_name == "step-1"
    assert first.signer_common_name == "Cachet serveur Ville de Lyon"
    assert first.valid
    assert first.trusted
    assert not first.digest_mismatch
    assert first.total_document_signed is False
    assert second.digest_mismatch
    assert not second.valid
    assert not second.trusted
    assert second.total_document_signed is True


def test_a_file_without_signatures_has_none() -> None:
    assert parse_pdfsig_output("File 'x.pdf' does not contain any signatures\n") == []
