"""The `DocumentSigner` port on mutualis_trust: PAdES with pyHanko, keys in a PKCS#11 token.

An agent's signature uses the agent's own key and certificate (created in the token and
certified by the PKI on their first signature); a seal uses the tenant's seal key. Each is one
incremental signature, so earlier steps' signatures stay valid.

Signatures run concurrently, each in a worker thread with an event loop of its own: pyHanko
spends tens of milliseconds of CPU per signature, which on the service's loop would stall every
request and NATS acknowledgement meanwhile. Nothing here holds a lock across a signature; the
token's session is used for `C_Sign` alone, which python-pkcs11 serialises per session, and the
TSA round trip waits on no lock at all.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Literal

from pyhanko.sign.signers import Signer

from mutualis_kernel.metrics import DomainMetrics
from mutualis_kernel.tenants import TenantDirectory
from mutualis_trust.identities import Identities
from mutualis_trust.pades import InvalidPdf, PadesError, SignedPdf, http_timestamper, sign_pdf
from parapheur.domain import errors
from parapheur.service_layer.ports import SignatureApplied, SignatureRequest

#: The process's one `DomainMetrics` (OpenTelemetry keeps the first callback registered for an
#: instrument name, so a second one would report no certificates): signatures and seals
#: applied per tenant, timestamp requests, certificate expiries. The composition root hands it
#: to the identities too.
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
        metrics: DomainMetrics = METRICS,
    ) -> None:
        self._identities = identities
        self._tenants = tenants
        self._tsa_url = tsa_url
        self._level = level
        self._visible = visible_stamp
        self._metrics = metrics
        # One for the service's life: it fetches pyHanko's size-estimation timestamp once.
        self._timestamper = http_timestamper(tsa_url, metrics=metrics) if tsa_url else None

    def _signer_for(self, request: SignatureRequest) -> Signer:
        tenant_name = self._tenants.get(request.tenant).name
        if request.kind == "seal":
            return self._identities.seal_signer(request.tenant, tenant_name)
        # The certificate names the person when identity gave their name, else their id.
        return self._identities.agent_signer(
            request.tenant, tenant_name, request.signer, request.signer_name or request.signer
        )

    def _sign_in_thread(
        self, request: SignatureRequest, pdf_in: Path, pdf_out: Path
    ) -> tuple[SignedPdf, str]:
        # Runs in a worker thread: finding (or, the first time, creating) the identity touches
        # the token and the disk, and pyHanko's signing is CPU work.
        signer = self._signer_for(request)
        certificate = signer.signing_cert
        subject = certificate.subject.human_friendly if certificate is not None else ""
        # "w+b", not "wb": pyHanko signs into the output file only if it can read it back;
        # a write-only file makes it build the whole signed PDF in memory first.
        with pdf_in.open("rb") as source, pdf_out.open("w+b") as target:
            signed = asyncio.run(
                sign_pdf(
                    source,
                    target,
                    signer,
                    field_name=request.field_name,
                    level=self._level,
                    tsa_url=self._tsa_url,
                    timestamper=self._timestamper,
                    reason=request.reason,
                    location=request.location,
                    name=request.signer_name if request.kind == "signature" else None,
                    visible_stamp=self._visible,
                    trust_roots=[self._identities.pki.ca_pem_path],
                )
            )
        return signed, subject

    async def sign(
        self, request: SignatureRequest, pdf_in: Path, pdf_out: Path
    ) -> SignatureApplied:
        try:
            signed, subject = await asyncio.to_thread(
                self._sign_in_thread, request, pdf_in, pdf_out
            )
        except (PadesError, InvalidPdf) as error:
            raise SigningFailed(str(error)) from None
        self._metrics.signature_applied(
            request.tenant, "seal" if request.kind == "seal" else "advanced"
        )
        return SignatureApplied(
            field_name=signed.field_name,
            certificate_subject=subject,
            certificate_sha256=signed.certificate_sha256,
            level=signed.level,
            # With a timestamp, the TSA's time is the one a verifier trusts: record that one.
            signed_at=signed.timestamp_time or signed.signing_time,
            timestamp_at=signed.timestamp_time,
        )
