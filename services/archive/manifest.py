"""What the archive declares: its event stream, its journal stream, KV buckets, object store
and consumers (no I/O here)."""

from __future__ import annotations

from dataclasses import replace

from mutualis_kernel.audit import AuditRule
from mutualis_kernel.bus.spec import ConsumerSpec
from mutualis_kernel.service import ServiceManifest
from mutualis_kernel.streams import (
    KeyValueSpec,
    ObjectStoreSpec,
    Resources,
    StreamSpec,
    events_stream,
)

EVENTS_STREAM = "ARCHIVE_EVENTS"
JOURNAL_STREAM = "ARCHIVE_JOURNAL"
RECORDS = "archive_records"
JOURNAL_IDS = "archive_journal_ids"
CONTENT = "archive_content"
PARAPHEUR_DOCUMENTS = "parapheur_documents"


def journal_subject(tenant: str) -> str:
    return f"archive.journal.{tenant}"


def seals_subject(tenant: str) -> str:
    return f"archive.seals.{tenant}"


RESOURCES = Resources(
    streams=(
        # Evidence is append-only by configuration too: the servers refuse to delete a message
        # or purge either stream, whoever asks. Disposal destroys content in the object store
        # (its own stream) and appends `record.disposed`; it never removes anything here.
        replace(
            events_stream("archive", "Records, holds, disposals, seals and integrity results."),
            deny_delete=True,
            deny_purge=True,
        ),
        StreamSpec(
            name=JOURNAL_STREAM,
            subjects=("archive.journal.>", "archive.seals.>"),
            description=(
                "Per-tenant hash-chained journal (archive.journal.<tenant>) and its "
                "RFC 3161 seals (archive.seals.<tenant>); kept forever."
            ),
            deny_delete=True,
            deny_purge=True,
        ),
    ),
    key_values=(
        KeyValueSpec(RECORDS, "Record projection by <tenant>.<record_id>, for search.", history=5),
        KeyValueSpec(JOURNAL_IDS, "Journal entry idempotency index: <tenant>.<entry id> -> seq."),
    ),
    object_stores=(ObjectStoreSpec(CONTENT, "Archived content, one object per record file."),),
)

CONSUMERS = (
    ConsumerSpec(
        durable="archive-parapheur-completed",
        stream="PARAPHEUR_EVENTS",
        filter_subjects=("evt.parapheur.*.folder.*.folder.completed",),
        service="archive",
        description="Ingests the final document of every completed parapheur folder.",
        batch=8,
    ),
    ConsumerSpec(
        durable="archive-identity-erased",
        stream="IDENTITY_EVENTS",
        filter_subjects=("evt.identity.*.user.*.user.erased",),
        service="archive",
        description="Journals that archived records are exempt from an erasure request.",
    ),
)

MANIFEST = ServiceManifest(
    name="archive",
    description="The digital vault: immutable records, fixity, retention, a sealed journal, SEDA.",
    default_port=8003,
    resources=RESOURCES,
    consumers=CONSUMERS,
    event_modules=("archive.domain.events",),
    reads_object_stores=(PARAPHEUR_DOCUMENTS,),
    audited=(
        # access, holds, disposal, integrity
        AuditRule("archive", "record.accessed", "record.accessed", ("by",), ("record_id",)),
        AuditRule(
            "archive", "record.disposed", "record.disposed", ("approved_by",), ("record_id",)
        ),
        AuditRule("archive", "hold.placed", "hold.placed", ("by",), ("record_id",)),
        AuditRule("archive", "hold.released", "hold.released", ("by",), ("record_id",)),
        AuditRule(
            "archive", "disposal.approved", "disposal.approved", ("approved_by",), ("disposal_id",)
        ),
        AuditRule(
            "archive", "integrity.failed", "integrity.failed", (), ("record_id", "reference")
        ),
    ),
)
