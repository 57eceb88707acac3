"""What the parapheur declares: its event stream, KV buckets, object store and consumers."""

from __future__ import annotations

from mutualis_kernel.audit import AuditRule
from mutualis_kernel.bus.spec import ConsumerSpec
from mutualis_kernel.service import ServiceManifest
from mutualis_kernel.streams import KeyValueSpec, ObjectStoreSpec, Resources, events_stream

CIRCUITS = "parapheur_circuits"
DELEGATIONS = "parapheur_delegations"
ERASURES = "parapheur_erasures"
DOCUMENTS = "parapheur_documents"

#: identity's `user.erased` events, whoever the tenant.
USER_ERASED = "evt.identity.*.user.*.user.erased"

RESOURCES = Resources(
    streams=(
        events_stream(
            "parapheur", "Folders moving through approval and signature circuits, delegations."
        ),
    ),
    key_values=(
        KeyValueSpec(CIRCUITS, "Circuit types by <tenant>.<circuit id>.", history=5),
        KeyValueSpec(DELEGATIONS, "Delegations by <tenant>.<delegation id>.", history=5),
        KeyValueSpec(ERASURES, "People erased by identity, by <tenant>.<sha256 of user id>."),
    ),
    object_stores=(
        ObjectStoreSpec(DOCUMENTS, "Main PDFs (every signed version) and attachments."),
    ),
)

ERASURE_CONSUMER = ConsumerSpec(
    durable="parapheur-user-erased",
    stream="IDENTITY_EVENTS",
    filter_subjects=(USER_ERASED,),
    service="parapheur",
    description="Pseudonymise erased people in the parapheur's folder views.",
)

SEAL_CONSUMER = ConsumerSpec(
    durable="parapheur-seals",
    stream="PARAPHEUR_EVENTS",
    filter_subjects=("evt.parapheur.*.folder.*.step.assigned",),
    service="parapheur",
    description="Apply a seal that was not applied inline (signing failure, crash).",
)

MANIFEST = ServiceManifest(
    name="parapheur",
    description="Approval and signature circuits with PAdES signatures for every commune.",
    default_port=8002,
    resources=RESOURCES,
    consumers=(SEAL_CONSUMER, ERASURE_CONSUMER),
    event_modules=("parapheur.domain.events",),
    # Reminders ride on a stream with message schedules (adapters/deadlines.py).
    private_streams=("PARAPHEUR_DEADLINES",),
    private_subjects=("parapheur.deadline.>",),
    audited=(
        # signatures and delegations of signing power
        AuditRule("parapheur", "step.signed", "step.signed", ("actor",), ()),
        AuditRule("parapheur", "step.rejected", "step.rejected", ("actor",), ()),
        AuditRule(
            "parapheur", "delegation.granted", "delegation.granted", ("delegator",), ("delegate",)
        ),
        AuditRule(
            "parapheur", "delegation.revoked", "delegation.revoked", ("by",), ("delegation_id",)
        ),
    ),
)
