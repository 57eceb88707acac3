"""A folder through a real circuit: visa -> signature (by delegation) -> seal, PAdES checked
by poppler's pdfsig and pyHanko's validator."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pyhanko.pdf_utils.reader import PdfFileReader

from identity.domain.events import UserErased
from mutualis_kernel.runtime import LocalCluster
from mutualis_kernel.tenants import default_tenants
from mutualis_kernel.testing.issuer import TestIssuer
from mutualis_trust.identities import SigningIdentities
from mutualis_trust.pades import pdfsig_verify, validate_pdf
from mutualis_trust.pkcs11 import Token
from mutualis_trust.testing import TrustEnv, require_pdfsig
from parapheur.adapters.signing import SigningFailed, TrustSigner
from parapheur.service_layer.ports import DocumentSigner, SignatureApplied, SignatureRequest

from .conftest import ARRETE, SEAL_ONLY, Parapheur, eventually, running_parapheur


async def test_a_folder_goes_through_visa_signature_by_delegation_and_seal(
    parapheur: Parapheur, trust_env: TrustEnv, tmp_path: Path
) -> None:
    sam = parapheur.agent("sam")
    alice = parapheur.agent(
        "alice", "bordeaux", "desk:secretariat", substantial=True, name="Alice Durand"
    )
    bob = parapheur.agent("bob", "bordeaux", "signatory", substantial=True)

    submitted = await parapheur.submit(sam)
    assert submitted.status_code == 201, submitted.text
    folder = submitted.json()["id"]
    assert submitted.json()["waiting_for_desks"] == ["secretariat"]

    async def alice_sees_it() -> bool:
        tasks = (await parapheur.http.get("/v1/tasks", headers=alice)).json()
        return folder in [t["id"] for t in tasks["items"]]

    await eventually(alice_sees_it)
    approved = await parapheur.act(folder, 0, "approve", alice, "vu")
    assert approved.status_code == 200, approved.text
    assert approved.json()["waiting_for_users"] == ["bob"]

    # Bob is away: he hands his signature to Alice for the week.
    now = datetime.now(UTC)
    granted = await parapheur.http.post(
        "/v1/delegations",
        json={
            "delegate": "alice",
            "starts_at": (now - timedelta(minutes=1)).isoformat(),
            "ends_at": (now + timedelta(days=7)).isoformat(),
        },
        headers=bob,
    )
    assert granted.status_code == 201, granted.text
    await eventually(alice_sees_it)

    signed = await parapheur.act(folder, 1, "sign", alice, "pour le maire, par délégation")
    assert signed.status_code == 200, signed.text
    assert signed.json()["status"] == "signed"  # the seal followed on its own

    history = await parapheur.history(folder)
    assert history == [
        "folder.submitted",
        "step.assigned",
        "step.approved",
        "step.assigned",
        "step.signed",
        "step.assigned",
        "step.signed",
        "folder.completed",
    ]
    proof = (await parapheur.http.get(f"/v1/folders/{folder}/proof", headers=sam)).json()
    by_delegation = next(e for e in proof["history"] if e["event"] == "step.signed")
    assert (by_delegation["actor"], by_delegation["on_behalf_of"]) == ("alice", "bob")
    assert [s["kind"] for s in proof["signatures"]] == ["signature", "seal"]
    page = await parapheur.http.get(f"/v1/folders/{folder}/proof.html", headers=sam)
    assert page.status_code == 200
    assert "pour le maire" in page.text

    download = await parapheur.http.get(f"/v1/folders/{folder}/document", headers=sam)
    assert download.status_code == 200
    final = tmp_path / "final.pdf"
    final.write_bytes(download.content)
    import hashlib

    assert hashlib.sha256(download.content).hexdigest() == proof["current_document"]["sha256"]

    report = await validate_pdf(final, [trust_env.pki.ca_pem_path])
    assert len(report.signatures) == 2
    assert report.all_ok, report
    # The signature names the person (identity's `name` claim), not their opaque id.
    assert [s.signer for s in report.signatures] == ["Alice Durand", "Cachet serveur Bordeaux"]
    # The circuit step is in the reason even with a comment; the recorded time is the TSA's.
    reasons = signature_reasons(final)
    assert reasons[0] == (
        "Arrêté, step 2/3 (signature): Arrêté de voirie — pour le maire, par délégation"
    )
    assert reasons[1] == "Arrêté, step 3/3 (seal): Arrêté de voirie"
    for recorded, checked in zip(proof["signatures"], report.signatures, strict=True):
        assert checked.timestamp_time is not None
        assert datetime.fromisoformat(recorded["signed_at"]) == checked.timestamp_time
        assert datetime.fromisoformat(recorded["timestamp_at"]) == checked.timestamp_time
    require_pdfsig()
    checked = pdfsig_verify(final, trust_env.pki.ca_pem_path)
    assert len(checked.signatures) == 2
    assert checked.all_valid_and_trusted, checked.output


def signature_reasons(path: Path) -> list[str]:
    """The /Reason of every signature of a PDF, as a verifier reads it."""
    with path.open("rb") as stream:
        reader = PdfFileReader(stream, strict=False)
        return [str(s.sig_object["/Reason"]) for s in reader.embedded_signatures]


async def test_signatures_are_pades_b_lta_when_configured(
    nats_cluster: LocalCluster, issuer: TestIssuer, trust_env: TrustEnv, tmp_path: Path
) -> None:
    token = Token.connect(trust_env.token)
    signer = TrustSigner(
        SigningIdentities(trust_env.pki, token),
        default_tenants(),
        tsa_url=trust_env.tsa_url,
        level="B-LTA",
    )
    try:
        async with running_parapheur(nats_cluster, issuer, signer, tmp_path) as parapheur:
            await parapheur.circuit(SEAL_ONLY)
            submitted = await parapheur.submit(parapheur.agent("sam"), circuit_id="sceau")
            assert submitted.json()["status"] == "signed", submitted.text
            folder = submitted.json()["id"]
            proof = (
                await parapheur.http.get(
                    f"/v1/folders/{folder}/proof", headers=parapheur.agent("sam")
                )
            ).json()
            assert proof["signatures"][0]["level"] == "B-LTA"
            download = await parapheur.http.get(
                f"/v1/folders/{folder}/document", headers=parapheur.agent("sam")
            )
            final = tmp_path / "sealed.pdf"
            final.write_bytes(download.content)
            report = await validate_pdf(final, [trust_env.pki.ca_pem_path])
            assert report.all_ok, report
            ready = await parapheur.http.get("/readyz")
            assert ready.status_code == 200, ready.text
    finally:
        token.close()


class FailsFirstSeal:
    """The real signer, except that the first seal fails (a TSA outage, say)."""

    def __init__(self, inner: DocumentSigner) -> None:
        self.inner = inner
        self.failed = False

    async def sign(
        self, request: SignatureRequest, pdf_in: Path, pdf_out: Path
    ) -> SignatureApplied:
        if request.kind == "seal" and not self.failed:
            self.failed = True
            raise SigningFailed("timestamp authority unreachable")
        return await self.inner.sign(request, pdf_in, pdf_out)


async def test_a_seal_that_failed_inline_is_applied_later_by_the_seal_consumer(
    nats_cluster: LocalCluster, issuer: TestIssuer, signer: DocumentSigner, tmp_path: Path
) -> None:
    flaky = FailsFirstSeal(signer)
    async with running_parapheur(nats_cluster, issuer, flaky, tmp_path) as parapheur:
        await parapheur.circuit(ARRETE)
        sam = parapheur.agent("sam")
        folder = (await parapheur.submit(sam)).json()["id"]
        await parapheur.act(
            folder, 0, "approve", parapheur.agent("alice", "bordeaux", "desk:secretariat")
        )
        signed = await parapheur.act(
            folder, 1, "sign", parapheur.agent("bob", "bordeaux", substantial=True)
        )
        # The signature stands; the seal is pending.
        assert signed.status_code == 200, signed.text
        assert (signed.json()["status"], signed.json()["step_kind"]) == ("in_progress", "seal")

        async def sealed() -> bool:
            view = await parapheur.http.get(f"/v1/folders/{folder}", headers=sam)
            return view.json()["status"] == "signed"

        await eventually(sealed, timeout=60)
        assert flaky.failed


async def test_an_all_of_signature_step_takes_one_valid_signature_per_signer(
    parapheur: Parapheur, trust_env: TrustEnv, tmp_path: Path
) -> None:
    both = {
        "id": "convention",
        "name": "Convention",
        "steps": [
            {
                "kind": "signature",
                "mode": "all",
                "actors": [{"kind": "user", "id": "bob"}, {"kind": "user", "id": "carol"}],
            }
        ],
    }
    await parapheur.circuit(both)
    sam = parapheur.agent("sam")
    folder = (await parapheur.submit(sam, circuit_id="convention")).json()["id"]
    first = await parapheur.act(folder, 0, "sign", parapheur.agent("bob", substantial=True))
    assert first.json()["waiting_for_users"] == ["carol"], first.text
    second = await parapheur.act(folder, 0, "sign", parapheur.agent("carol", substantial=True))
    assert second.json()["status"] == "signed", second.text
    download = await parapheur.http.get(f"/v1/folders/{folder}/document", headers=sam)
    final = tmp_path / "convention.pdf"
    final.write_bytes(download.content)
    report = await validate_pdf(final, [trust_env.pki.ca_pem_path])
    assert len(report.signatures) == 2
    assert report.all_ok, report


async def test_an_erased_signer_leaves_the_views_and_their_signature_stays_valid(
    parapheur: Parapheur, trust_env: TrustEnv, tmp_path: Path
) -> None:
    signatory = f"u-{uuid.uuid4().hex[:8]}"
    await parapheur.circuit(
        {
            "id": "arrete-simple",
            "name": "Arrêté simple",
            "steps": [{"kind": "signature", "actors": [{"kind": "user", "id": signatory}]}],
        }
    )
    sam = parapheur.agent("sam")
    folder = (await parapheur.submit(sam, circuit_id="arrete-simple")).json()["id"]
    signed = await parapheur.act(
        folder, 0, "sign", parapheur.agent(signatory, substantial=True, name="Jeanne Roux")
    )
    assert signed.json()["status"] == "signed", signed.text
    await parapheur.platform.publisher.publish(
        UserErased(user_id=signatory, tenant="bordeaux", kind="agent"),
        tenant="bordeaux",
        aggregate_id=signatory,
    )

    async def pseudonymised() -> bool:
        proof = await parapheur.http.get(f"/v1/folders/{folder}/proof", headers=sam)
        return signatory not in proof.text

    await eventually(pseudonymised)
    for view in ("/proof", "/proof.html", "/history"):
        shown = await parapheur.http.get(f"/v1/folders/{folder}{view}", headers=sam)
        assert "Jeanne Roux" not in shown.text, view
        assert signatory not in shown.text, view
    download = await parapheur.http.get(f"/v1/folders/{folder}/document", headers=sam)
    final = tmp_path / "signed.pdf"
    final.write_bytes(download.content)
    report = await validate_pdf(final, [trust_env.pki.ca_pem_path])
    assert report.all_ok, report
    assert [s.signer for s in report.signatures] == ["Jeanne Roux"]  # the PDF is as signed
