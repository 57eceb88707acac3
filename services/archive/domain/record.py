"""Rebuilding a record from its events, and the decisions that record new ones."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime

from archive.domain import errors
from archive.domain.events import HoldPlaced, HoldReleased, RecordDisposed, RecordIngested
from archive.domain.model import Hold, Record
from mutualis_kernel.events import Event


def replay(tenant: str, events: Iterable[Event]) -> Record | None:
    """The record's state after `events` (None when it was never ingested)."""
    record: Record | None = None
    for event in events:
        record = apply(tenant, record, event)
    return record


def apply(tenant: str, record: Record | None, event: Event) -> Record | None:
    if isinstance(event, RecordIngested):
        return Record(
            record_id=event.record_id,
            tenant=tenant,
            metadata=event.metadata,
            content=event.content,
            source=event.source,
            source_ref=event.source_ref,
            ingested_by=event.ingested_by,
            ingested_at=event.ingested_at,
        )
    if record is None:
        return None
    if isinstance(event, HoldPlaced):
        holds = dict(record.holds)
        holds[event.hold_id] = Hold(
            hold_id=event.hold_id, reason=event.reason, placed_by=event.by, placed_at=event.at
        )
        return record.model_copy(update={"holds": holds})
    if isinstance(event, HoldReleased):
        holds = {k: v for k, v in record.holds.items() if k != event.hold_id}
        return record.model_copy(update={"holds": holds})
    if isinstance(event, RecordDisposed):
        return record.model_copy(
            update={
                "status": "disposed",
                "disposed_at": event.at,
                "disposal_id": event.disposal_id,
            }
        )
    return record


def place_hold(record: Record, hold_id: str, reason: str, by: str, at: datetime) -> HoldPlaced:
    record.ensure_active()
    if not reason.strip():
        raise errors.InvalidMetadata("a legal hold needs a reason")
    return HoldPlaced(record_id=record.record_id, hold_id=hold_id, reason=reason, by=by, at=at)


def release_hold(record: Record, hold_id: str, by: str, at: datetime) -> HoldReleased:
    if hold_id not in record.holds:
        raise errors.HoldNotFound(f"record {record.record_id} has no hold {hold_id}")
    return HoldReleased(record_id=record.record_id, hold_id=hold_id, by=by, at=at)


def dispose(
    record: Record,
    *,
    disposal_id: str,
    approved_by: str,
    certificate_record_id: str,
    today: date,
    at: datetime,
) -> RecordDisposed:
    blocker = record.disposal_blocker(today)
    if blocker is not None:
        raise errors.DisposalRefused(f"record {record.record_id}: {blocker}")
    return RecordDisposed(
        record_id=record.record_id,
        disposal_id=disposal_id,
        approved_by=approved_by,
        sha256=record.content.sha256,
        certificate_record_id=certificate_record_id,
        at=at,
    )
