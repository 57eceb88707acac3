"""The archive's events (ARCHIVE_EVENTS). Aggregates: `record` (one archived record), `audit`
(fixity results per record, or `journal` for the chain), `journal` (seals, id = tenant) and
`disposal` (an approved batch)."""

from __future__ import annotations

from datetime import datetime

from archive.domain.model import ContentInfo, RecordMetadata, Source
from mutualis_kernel.events import Event, domain_event


@domain_event("archive", "record.ingested", aggregate="record")
class RecordIngested(Event):
    """A record entered the vault: its metadata, its content's hashes and identified format."""

    record_id: str
    metadata: RecordMetadata
    content: ContentInfo
    source: Source
    source_ref: str
    ingested_by: str
    ingested_at: datetime


@domain_event("archive", "record.accessed", aggregate="record")
class RecordAccessed(Event):
    """Someone downloaded a record's content (access is journaled too)."""

    record_id: str
    by: str
    roles: tuple[str, ...]
    at: datetime


@domain_event("archive", "record.disposed", aggregate="record")
class RecordDisposed(Event):
    """A record's content was destroyed by an approved disposal; its metadata stays."""

    record_id: str
    disposal_id: str
    approved_by: str
    sha256: str
    certificate_record_id: str
    at: datetime


@domain_event("archive", "hold.placed", aggregate="record")
class HoldPlaced(Event):
    """A legal hold now blocks the record's disposal."""

    record_id: str
    hold_id: str
    reason: str
    by: str
    at: datetime


@domain_event("archive", "hold.released", aggregate="record")
class HoldReleased(Event):
    """A legal hold was lifted."""

    record_id: str
    hold_id: str
    by: str
    at: datetime


@domain_event("archive", "disposal.approved", aggregate="disposal")
class DisposalApproved(Event):
    """An archivist approved the destruction of a batch of eligible records."""

    disposal_id: str
    record_ids: tuple[str, ...]
    approved_by: str
    certificate_record_id: str
    at: datetime


@domain_event("archive", "journal.sealed", aggregate="journal")
class JournalSealed(Event):
    """A new seal: the Merkle root of journal entries first_seq..last_seq, timestamped by a TSA."""

    number: int
    first_seq: int
    last_seq: int
    merkle_root: str
    seal_digest: str
    timestamped_at: datetime


@domain_event("archive", "integrity.verified", aggregate="audit")
class IntegrityVerified(Event):
    """A fixity check found a record's content intact."""

    record_id: str
    sha256: str
    checked_at: datetime


@domain_event("archive", "integrity.failed", aggregate="audit")
class IntegrityFailed(Event):
    """A fixity check or a verification found something broken: alert the tenant's archivists."""

    kind: str  # object | journal | seal
    record_id: str | None = None
    reference: str
    reason: str
    detected_at: datetime
