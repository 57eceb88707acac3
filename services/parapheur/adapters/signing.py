"""The `DocumentSigner` port on mutualis_trust: PAdES with pyHanko, keys in a PKCS#11 token.

An agent's signature uses the agent's own key and certificate (created in the token and
certified by the PKI on their first signature); a seal uses the tenant's seal key. Each is one
incremental signature, so earlier steps' signatures stay valid.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from mutualis_kernel.metrics import DomainMetrics
from mutualis_kernel.tenants import TenantDirectory
from mutualis_trust.identities import Identities
from mutualis_trust.pades import InvalidPdf, PadesError, sign_pdf
from parapheur.domain import errors
from parapheur.service_layer.ports import SignatureApplied, SignatureRequest

#: Signatures and seals applied, per tenant: the parapheur dashboard reads them.
METRICS = DomainMetrics()


class SigningFailed(errors.ParapheurError):
    code = "signing_failed"
    status = 502


class TrustSigner:
    def __init__(
        self,
        identities: Identities,
        tenants: TenantDirectory,
        *,
        tsa_url: str | None,
        level: Literal["B-B", "B-T", "B-LTA"] = "B-T",
        visible_stamp: bool = False,
    ) -> None:
        self._identities = identities
        self._tenants = tenants
        self._tsa_url = tsa_url
        self._level = level
        self._visible = visible_stamp
        # One PKCS#11 session: signatures go through it one at a time.
        self._lock = asyncio.Lock()

    async def sign(
        self, request: SignatureRequest, pdf_in: Path, pdf_out: Path
    ) -> SignatureApplied:
        tenant_name = self._tenants.get(request.tenant).name
        async with self._lock:
            if request.kind == "seal":
                signer = self._identities.seal_signer(request.tenant, tenant_name)
            else:
                signer = self._identities.agent_signer(
                    request.tenant, tenant_name, request.signer, request.signer
                )
            certificate = signer.signing_cert
            with pdf_in.open("rb") as source, pdf_out.open("wb") as target:
                try:
                    signed = await sign_pdf(
                        source,
                        target,
                        signer,
                        field_name=request.field_name,
                        level=self._level,
                        tsa_url=self._tsa_url,
                        reason=request.reason,
                        location=request.location,
                        visible_stamp=self._visible,
                        trust_roots=[self._identities.pki.ca_pem_path],
                    )
                except (PadesError, InvalidPdf) as error:
                    raise SigningFailed(str(error)) from None
        METRICS.signature_applied(request.tenant, "seal" if request.kind == "seal" else "advanced")
        now = datetime.now(UTC)
        return SignatureApplied(
            field_name=signed.field_name,
            certificate_subject=certificate.subject.human_friendly if certificate else "",
            certificate_sha256=signed.certificate_sha256,
            level=signed.level,
            signed_at=now,
            timestamp_at=now if signed.level != "B-B" else None,
        )
