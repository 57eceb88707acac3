"""Small builders shared by the parapheur's unit tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from parapheur.domain.events import (
    ActorRef,
    CircuitSpec,
    DocumentRef,
    SignatureInfo,
    StepSpec,
)
from parapheur.domain.model import Agent, Folder

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

ALICE = Agent("alice", frozenset({"secretariat"}))
BOB = Agent("bob", frozenset({"direction"}), substantial=True)
CAROL = Agent("carol", substantial=True)


def doc(version: int = 0) -> DocumentRef:
    return DocumentRef(
        object_name=f"bordeaux/f1/v{version}.pdf",
        filename="arrete.pdf",
        sha256=f"{version:064x}",
        size=1000 + version,
    )


def signature(step: int, signer: str = "bob", kind: str = "signature") -> SignatureInfo:
    return SignatureInfo(
        step=step,
        kind=kind,  # type: ignore[arg-type]
        signer=signer,
        field_name=f"step-{step}",
        certificate_subject=f"CN={signer}",
        certificate_sha256="ab" * 32,
        level="B-T",
        signed_at=NOW,
    )


def circuit(*steps: StepSpec) -> CircuitSpec:
    return CircuitSpec(id="arrete", name="Arrêté", steps=steps)


VISA_SIGN_SEAL = circuit(
    StepSpec(kind="visa", actors=(ActorRef(kind="desk", id="secretariat"),)),
    StepSpec(kind="signature", actors=(ActorRef(kind="user", id="bob"),)),
    StepSpec(kind="seal"),
)


def submitted(spec: CircuitSpec = VISA_SIGN_SEAL, due: timedelta | None = None) -> Folder:
    folder = Folder("f1", "bordeaux")
    folder.submit(
        title="Arrêté de voirie",
        circuit=spec,
        document=doc(),
        attachments=(),
        metadata={"service": "voirie"},
        submitted_by="sam",
        submitter_kind="agent",
        due_at=NOW + due if due else None,
        now=NOW,
    )
    return folder
