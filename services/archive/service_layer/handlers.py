"""The archive's use cases: ingest, access, holds, disposal, sealing, fixity and verification.

Each use case loads what it needs, lets the domain decide, appends events with optimistic
concurrency, keeps the search projection in step and journals the operation. Reactions to other
services' events (parapheur's `folder.completed`, identity's `user.erased`) are at the bottom.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import structlog
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link

from archive.adapters.content import ContentMissing, ContentStore, ContentUnavailable, Staged
from archive.adapters.journal import JetStreamJournal, Seal
from archive.adapters.records import RecordRepository
from archive.domain import errors
from archive.domain import record as rules
from archive.domain.commands import SYSTEM, Actor, Ingest, record_id_for
from archive.domain.events import (
    DisposalApproved,
    IntegrityFailed,
    IntegrityVerified,
    JournalSealed,
    RecordAccessed,
    RecordIngested,
)
from archive.domain.journal import (
    GENESIS,
    JournalEntry,
    SealStatement,
    check_chain,
    merkle_root,
    seal_statement,
)
from archive.domain.model import ContentInfo, Record, RecordMetadata, RetentionRule, utcnow
from archive.service_layer.ports import Timestamper
from archive.service_layer.reports import (
    DisposalResult,
    FixityResult,
    ObjectProblem,
    SealInfo,
    SealProblem,
    VerifyReport,
)
from mutualis_kernel.bus.errors import ConcurrencyConflict
from mutualis_kernel.bus.publisher import EventPublisher
from mutualis_kernel.events import Envelope, derived_event_id
from mutualis_kernel.metrics import DomainMetrics

log = structlog.get_logger("archive")
#: Records ingested and bytes, fixity results: what the archive dashboard and alerts read.
METRICS = DomainMetrics()
_tracer = trace.get_tracer("archive")
#: A span's links are bounded; a seal of a busy hour links to its first operations.
MAX_SEAL_LINKS = 128


@dataclass(frozen=True)
class SearchQuery:
    title: str | None = None
    document_type: str | None = None
    originating_service: str | None = None
    keyword: str | None = None
    date_from: date | None = None
    date_to: date | None = None
    status: str | None = None


class ArchiveService:
    def __init__(
        self,
        *,
        publisher: EventPublisher,
        records: RecordRepository,
        content: ContentStore,
        journal: JetStreamJournal,
        timestamper: Timestamper,
        today: Callable[[], date] = lambda: datetime.now(UTC).date(),
        work_dir: Path | None = None,
    ) -> None:
        self.publisher = publisher
        self.records = records
        self.content = content
        self.journal = journal
        self.timestamper = timestamper
        self.today = today
        self.work_dir = work_dir

    # -- ingest ---------------------------------------------------------------------------

    async def ingest(self, command: Ingest, staged: Staged) -> tuple[Record, bool]:
        """Store a record once; (record, created). A repeated cause returns the first record."""
        record_id = command.record_id
        existing, _ = await self.records.load(command.tenant, record_id)
        if existing is not None:
            await self._finish_ingest(existing)
            return existing, False
        fixity = staged.fixity
        for declared, actual, name in (
            (command.declared_sha256, fixity.sha256, "SHA-256"),
            (command.declared_sha512, fixity.sha512, "SHA-512"),
        ):
            if declared is not None and declared.strip().lower() != actual:
                raise errors.HashMismatch(
                    f"declared {name} {declared} does not match the received content's {actual}"
                )
        object_name = f"{command.tenant}/{record_id}/{fixity.sha256}"
        await self.content.put_file(object_name, staged.path, staged.format.mime_type)
        event = RecordIngested(
            record_id=record_id,
            metadata=command.metadata,
            content=ContentInfo(
                object_name=object_name,
                filename=command.filename,
                size=fixity.size,
                sha256=fixity.sha256,
                sha512=fixity.sha512,
                format=staged.format,
            ),
            source=command.source,
            source_ref=command.cause,
            ingested_by=command.by.subject,
            ingested_at=utcnow(),
        )
        try:
            await self.publisher.append(
                event,
                tenant=command.tenant,
                aggregate_id=record_id,
                expected_version=0,
                event_id=derived_event_id(record_id, "ingested"),
            )
        except ConcurrencyConflict:
            # A concurrent submission of the same cause won; keep its content, not ours.
            winner, _ = await self.records.load(command.tenant, record_id)
            assert winner is not None
            if winner.content.object_name != object_name:
                await self.content.delete(object_name)
            await self._finish_ingest(winner)
            return winner, False
        record = rules.replay(command.tenant, [event])
        assert record is not None
        METRICS.record_ingested(command.tenant, fixity.size)
        # Appended at version 0 just now: the record is this one event, no need to read it back.
        await self._finish_ingest(record, reload=False)
        return record, True

    async def _finish_ingest(self, record: Record, *, reload: bool = True) -> None:
        """Projection and journal entry of an ingest; idempotent, so a retry repairs a crash."""
        current = None
        if reload:
            current, _ = await self.records.load(record.tenant, record.record_id)
        # Independent and each idempotent: written at once, an ingest waits for the longer of
        # the two rather than for both in turn.
        await asyncio.gather(self.records.project(current or record), self._journal_ingest(record))

    async def _journal_ingest(self, record: Record) -> None:
        await self.journal.append(
            record.tenant,
            "ingest",
            record_id=record.record_id,
            details={
                "sha256": record.content.sha256,
                "sha512": record.content.sha512,
                "size": record.content.size,
                "format": record.content.format.mime_type,
                "source": record.source,
                "by": record.ingested_by,
            },
            entry_id=f"ingest-{record.record_id}",
            time=record.ingested_at,
        )

    # -- reading --------------------------------------------------------------------------

    async def get(self, tenant: str, record_id: str, actor: Actor) -> Record:
        record, _ = await self.records.load(tenant, record_id)
        if record is None or not record.visible_to(actor.roles, self.today()):
            # Hidden records answer like missing ones: their existence is not disclosed.
            raise errors.RecordNotFound(f"no record {record_id} in {tenant}")
        return record

    async def search(self, tenant: str, query: SearchQuery, actor: Actor) -> list[Record]:
        found = []
        today = self.today()
        async for record in self.records.all(tenant):
            if record.visible_to(actor.roles, today) and _matches(record, query):
                found.append(record)
        found.sort(key=lambda r: (r.metadata.document_date, r.record_id))
        return found

    async def download(
        self, tenant: str, record_id: str, actor: Actor
    ) -> tuple[Record, AsyncIterator[bytes]]:
        record = await self.get(tenant, record_id, actor)
        record.ensure_active()
        now = utcnow()
        await self.journal.append(
            tenant,
            "access",
            record_id=record_id,
            details={"by": actor.subject, "roles": sorted(actor.roles)},
        )
        await self.publisher.publish(
            RecordAccessed(
                record_id=record_id, by=actor.subject, roles=tuple(sorted(actor.roles)), at=now
            ),
            tenant=tenant,
            aggregate_id=record_id,
        )
        return record, self.content.chunks(record.content.object_name)

    # -- holds ----------------------------------------------------------------------------

    async def place_hold(self, tenant: str, record_id: str, reason: str, actor: Actor) -> Record:
        record, version = await self._load(tenant, record_id)
        event = rules.place_hold(record, str(uuid.uuid4()), reason, actor.subject, utcnow())
        await self.publisher.append(
            event, tenant=tenant, aggregate_id=record_id, expected_version=version
        )
        updated = rules.apply(tenant, record, event)
        assert updated is not None
        await self.records.project(updated)
        await self.journal.append(
            tenant,
            "hold.placed",
            record_id=record_id,
            details={"hold_id": event.hold_id, "reason": reason, "by": actor.subject},
        )
        return updated

    async def release_hold(self, tenant: str, record_id: str, hold_id: str, actor: Actor) -> Record:
        record, version = await self._load(tenant, record_id)
        event = rules.release_hold(record, hold_id, actor.subject, utcnow())
        await self.publisher.append(
            event, tenant=tenant, aggregate_id=record_id, expected_version=version
        )
        updated = rules.apply(tenant, record, event)
        assert updated is not None
        await self.records.project(updated)
        await self.journal.append(
            tenant,
            "hold.released",
            record_id=record_id,
            details={"hold_id": hold_id, "by": actor.subject},
        )
        return updated

    async def _load(self, tenant: str, record_id: str) -> tuple[Record, int]:
        record, version = await self.records.load(tenant, record_id)
        if record is None:
            raise errors.RecordNotFound(f"no record {record_id} in {tenant}")
        return record, version

    # -- disposal -------------------------------------------------------------------------

    async def disposal_candidates(self, tenant: str) -> list[Record]:
        """Records whose retention ran out with final action "destroy" and no hold."""
        today = self.today()
        return [r async for r in self.records.all(tenant) if r.eligible_for_disposal(today)]

    async def approve_disposal(
        self, tenant: str, record_ids: list[str], actor: Actor
    ) -> DisposalResult:
        """Destroy a batch: refused whole if any record is not eligible (with every reason)."""
        if not record_ids:
            raise errors.DisposalRefused("an empty batch")
        today = self.today()
        loaded: list[tuple[Record, int]] = []
        refusals = []
        for record_id in dict.fromkeys(record_ids):
            record, version = await self._load(tenant, record_id)
            blocker = record.disposal_blocker(today)
            if blocker is not None:
                refusals.append(f"{record_id}: {blocker}")
            loaded.append((record, version))
        if refusals:
            raise errors.DisposalRefused("; ".join(refusals))
        disposal_id = str(uuid.uuid4())
        now = utcnow()
        certificate = {
            "type": "mutualis.archive.certificate-of-destruction.v1",
            "disposal_id": disposal_id,
            "tenant": tenant,
            "approved_by": actor.subject,
            "destroyed_at": now.isoformat(),
            "records": [
                {
                    "record_id": r.record_id,
                    "title": r.metadata.title,
                    "document_type": r.metadata.document_type,
                    "retention": r.metadata.retention.model_dump(mode="json"),
                    "sha256": r.content.sha256,
                    "sha512": r.content.sha512,
                    "size": r.content.size,
                    "ingested_at": r.ingested_at.isoformat(),
                }
                for r, _ in loaded
            ],
        }
        certificate_id = await self._store_certificate(tenant, disposal_id, certificate, actor)
        for record, version in loaded:
            event = rules.dispose(
                record,
                disposal_id=disposal_id,
                approved_by=actor.subject,
                certificate_record_id=certificate_id,
                today=today,
                at=now,
            )
            await self.content.delete(record.content.object_name)
            await self.publisher.append(
                event,
                tenant=tenant,
                aggregate_id=record.record_id,
                expected_version=version,
                event_id=derived_event_id(disposal_id, record.record_id),
            )
            updated = rules.apply(tenant, record, event)
            assert updated is not None
            await self.records.project(updated)
            await self.journal.append(
                tenant,
                "disposal",
                record_id=record.record_id,
                details={
                    "disposal_id": disposal_id,
                    "sha256": record.content.sha256,
                    "approved_by": actor.subject,
                    "certificate": certificate_id,
                },
            )
        await self.publisher.publish(
            DisposalApproved(
                disposal_id=disposal_id,
                record_ids=tuple(r.record_id for r, _ in loaded),
                approved_by=actor.subject,
                certificate_record_id=certificate_id,
                at=now,
            ),
            tenant=tenant,
            aggregate_id=disposal_id,
        )
        return DisposalResult(
            disposal_id=disposal_id,
            tenant=tenant,
            record_ids=[r.record_id for r, _ in loaded],
            certificate_record_id=certificate_id,
            approved_by=actor.subject,
        )

    async def _store_certificate(
        self, tenant: str, disposal_id: str, certificate: dict[str, Any], actor: Actor
    ) -> str:
        import io

        from archive.adapters.content import stage

        body = json.dumps(certificate, indent=2, sort_keys=True).encode()
        today = self.today()
        staged = await stage(io.BytesIO(body), self.work_dir)
        try:
            command = Ingest(
                tenant=tenant,
                metadata=RecordMetadata(
                    title=f"Certificate of destruction {disposal_id}",
                    originating_service="archive",
                    document_type="certificate-of-destruction",
                    document_date=today,
                    retention=RetentionRule(duration="P0D", final_action="keep", start_date=today),
                    keywords=("disposal", "certificate"),
                ),
                filename=f"destruction-{disposal_id}.json",
                source="disposal",
                cause=disposal_id,
                by=actor,
                declared_sha256=hashlib.sha256(body).hexdigest(),
            )
            record, _ = await self.ingest(command, staged)
        finally:
            staged.discard()
        return record.record_id

    # -- sealing --------------------------------------------------------------------------

    async def seal(self, tenant: str) -> SealInfo:
        """Seal the entries since the last seal: Merkle root -> TSA token, stored with the seal.

        The seal is its own trace; it links to the traces of the operations it seals (a
        folder's ingest, an access), which are not its parents.
        """
        previous, _ = await self.journal.last_seal(tenant)
        after = previous.parsed().last_seq if previous else 0
        links = [Link(context) for context in (await self.journal.traces_after(tenant, after))]
        with _tracer.start_as_current_span(
            "archive.journal.seal",
            context=Context(),  # a new trace, not a child of whoever asked
            links=links[:MAX_SEAL_LINKS],
            attributes={"mutualis.tenant": tenant, "archive.sealed_operations": len(links)},
        ):
            return await self._seal(tenant)

    async def _seal(self, tenant: str) -> SealInfo:
        for _ in range(5):
            previous, previous_seq = await self.journal.last_seal(tenant)
            previous_statement = previous.parsed() if previous else None
            after = previous_statement.last_seq if previous_statement else 0
            entries = [e async for e in self.journal.entries(tenant) if e.seq > after]
            if not entries:
                raise errors.NothingToSeal(f"no journal entry of {tenant} since the last seal")
            statement = seal_statement(
                tenant=tenant, previous=previous_statement, entries=entries, sealed_at=utcnow()
            )
            data = statement.to_bytes()
            tsr = await self.timestamper.timestamp(data)
            import base64

            seal = Seal(
                number=statement.number,
                statement=data.decode(),
                tsr_b64=base64.b64encode(tsr).decode(),
                tsa_chain_pem=self.timestamper.chain_pem(),
            )
            if await self.journal.store_seal(tenant, seal, previous_seq):
                await self.publisher.publish(
                    JournalSealed(
                        number=statement.number,
                        first_seq=statement.first_seq,
                        last_seq=statement.last_seq,
                        merkle_root=statement.merkle_root,
                        seal_digest=statement.digest,
                        timestamped_at=statement.sealed_at,
                    ),
                    tenant=tenant,
                    aggregate_id=tenant,
                    event_id=derived_event_id(statement.digest, "sealed"),
                )
                # The seal operation itself opens the next sealed range.
                await self.journal.append(
                    tenant,
                    "seal",
                    details={
                        "number": statement.number,
                        "digest": statement.digest,
                        "merkle_root": statement.merkle_root,
                    },
                )
                return seal_info(statement)
        raise errors.ArchiveError(f"sealing {tenant} kept racing another instance")

    async def seals(self, tenant: str) -> list[SealInfo]:
        return [seal_info(s.parsed()) async for s in self.journal.seals(tenant)]

    async def find_seal(self, tenant: str, number: int) -> Seal:
        async for seal in self.journal.seals(tenant):
            if seal.number == number:
                return seal
        raise errors.SealNotFound(f"no seal {number} for {tenant}")

    # -- fixity and verification ----------------------------------------------------------

    async def check_fixity(
        self, record: Record, *, emit: bool = True, full: bool = True
    ) -> FixityResult:
        """Re-hash a record's content. `full` checks SHA-256 and SHA-512 (`verify`); the
        routine audit checks SHA-256 and the size, at the speed of the read."""
        try:
            if full:
                fixity = await self.content.fixity(record.content.object_name)
                sha256 = fixity.sha256
                same = (fixity.sha256, fixity.sha512) == (
                    record.content.sha256,
                    record.content.sha512,
                )
            else:
                digest = await self.content.sha256_fixity(record.content.object_name)
                sha256 = digest.sha256
                same = (digest.sha256, digest.size) == (
                    record.content.sha256,
                    record.content.size,
                )
        except ContentMissing as error:
            result = FixityResult(
                tenant=record.tenant, record_id=record.record_id, ok=False, reason=str(error)
            )
        else:
            if same:
                result = FixityResult(
                    tenant=record.tenant, record_id=record.record_id, ok=True, sha256=sha256
                )
            else:
                result = FixityResult(
                    tenant=record.tenant,
                    record_id=record.record_id,
                    ok=False,
                    sha256=sha256,
                    reason=f"content hashes to {sha256}, recorded {record.content.sha256}",
                )
        if emit:
            await self._report_fixity(record, result)
        return result

    async def _report_fixity(self, record: Record, result: FixityResult) -> None:
        METRICS.fixity_checked(record.tenant, result.ok)
        now = utcnow()
        await self.journal.append(
            record.tenant,
            "fixity",
            record_id=record.record_id,
            details={"ok": result.ok, "sha256": result.sha256, "reason": result.reason},
        )
        if result.ok:
            event: IntegrityVerified | IntegrityFailed = IntegrityVerified(
                record_id=record.record_id, sha256=result.sha256 or "", checked_at=now
            )
        else:
            log.error(
                "archive.integrity_failed",
                tenant=record.tenant,
                record_id=record.record_id,
                reason=result.reason,
            )
            event = IntegrityFailed(
                kind="object",
                record_id=record.record_id,
                reference=record.content.object_name,
                reason=result.reason or "",
                detected_at=now,
            )
        await self.publisher.publish(event, tenant=record.tenant, aggregate_id=record.record_id)

    async def verify(self, tenant: str, *, check_objects: bool = True) -> VerifyReport:
        """Check the whole chain, every seal (token, Merkle root, link) and every object."""
        report = VerifyReport(tenant=tenant, ok=True, checked_at=utcnow())
        entries: list[JournalEntry] = []
        async for seq_body in self.journal.raw_entries(tenant):
            _, body = seq_body
            try:
                entries.append(JournalEntry.model_validate_json(body))
            except ValueError:
                report.first_broken_entry = report.first_broken_entry or _break(
                    len(entries) + 1, "entry is not valid JSON"
                )
                break
        report.entries_checked = len(entries)
        if report.first_broken_entry is None:
            report.first_broken_entry = check_chain(entries)
        by_seq = {e.seq: e for e in entries}
        previous: SealStatement | None = None
        async for seal in self.journal.seals(tenant):
            report.seals_checked += 1
            problem = await self._check_seal(seal, previous, entries, by_seq)
            if problem is not None:
                report.broken_seals.append(SealProblem(number=seal.number, reason=problem))
            try:
                previous = seal.parsed()
            except ValueError:
                previous = None
        last_sealed = previous.last_seq if previous else 0
        report.unsealed_entries = max(0, len(entries) - last_sealed)
        if check_objects:
            async for record in self.records.all(tenant):
                if record.status != "active":
                    continue
                report.objects_checked += 1
                result = await self.check_fixity(record, emit=False)
                if not result.ok:
                    report.broken_objects.append(
                        ObjectProblem(
                            record_id=record.record_id,
                            object_name=record.content.object_name,
                            reason=result.reason or "",
                        )
                    )
        report.ok = not (report.first_broken_entry or report.broken_seals or report.broken_objects)
        if not report.ok:
            await self.publisher.publish(
                IntegrityFailed(
                    kind="journal",
                    reference=tenant,
                    reason=report.summary()[:2000],
                    detected_at=report.checked_at,
                ),
                tenant=tenant,
                aggregate_id="journal",
            )
        return report

    async def _check_seal(
        self,
        seal: Seal,
        previous: SealStatement | None,
        entries: list[JournalEntry],
        by_seq: dict[int, JournalEntry],
    ) -> str | None:
        try:
            statement = seal.parsed()
        except ValueError:
            return "statement is not valid"
        if statement.to_bytes() != seal.statement_bytes:
            return "statement is not in canonical form"
        if statement.number != seal.number:
            return "seal number differs from its statement"
        expected_prev = previous.digest if previous else GENESIS
        if statement.prev_seal_digest != expected_prev:
            return "does not commit to the previous seal"
        expected_first = previous.last_seq + 1 if previous else 1
        if statement.first_seq != expected_first:
            return f"covers entries from {statement.first_seq}, expected {expected_first}"
        covered = [by_seq.get(seq) for seq in range(statement.first_seq, statement.last_seq + 1)]
        if any(e is None for e in covered):
            return "entries it covers are missing from the journal"
        hashes = [e.hash for e in covered if e is not None]
        if merkle_root(hashes) != statement.merkle_root:
            return "Merkle root does not match the journal entries"
        if hashes[-1] != statement.last_entry_hash:
            return "last entry hash differs"
        reason = await self.timestamper.verify(seal.statement_bytes, seal.tsr)
        if reason is not None:
            return f"timestamp token does not verify: {reason}"
        return None

    async def audit(self, tenants: list[str], rate_bytes_s: int, stop: asyncio.Event) -> int:
        """One fixity pass over every active record at most `rate_bytes_s`; returns failures."""
        failures = 0
        for tenant in tenants:
            async for record in self.records.all(tenant):
                if stop.is_set():
                    return failures
                if record.status != "active":
                    continue
                try:
                    result = await self.check_fixity(record, full=False)
                except ContentUnavailable as error:
                    # The stream had no leader for a while: not an integrity failure; the
                    # next pass reads it again.
                    log.warning("fixity.unavailable", record_id=record.record_id, error=str(error))
                    continue
                failures += not result.ok
                pause = record.content.size / rate_bytes_s
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=pause)
        return failures

    # -- reactions --------------------------------------------------------------------------

    async def on_user_erased(self, tenant: str, user_id: str) -> None:
        """Archived records are exempt from erasure (RGPD art. 17(3)(b)(d), Code du patrimoine):
        nothing is deleted; the decision is journaled with the opaque user id only."""
        await self.journal.append(
            tenant,
            "erasure.exempted",
            details={
                "user_id": user_id,
                "basis": "RGPD art. 17(3)(b)(d); Code du patrimoine L211-1",
            },
            entry_id=f"erasure-{user_id}",
        )


def parapheur_record_id(tenant: str, folder_id: str) -> str:
    return record_id_for(tenant, "parapheur", folder_id)


def seal_info(statement: SealStatement) -> SealInfo:
    return SealInfo(
        tenant=statement.tenant,
        number=statement.number,
        first_seq=statement.first_seq,
        last_seq=statement.last_seq,
        merkle_root=statement.merkle_root,
        digest=statement.digest,
        prev_seal_digest=statement.prev_seal_digest,
        sealed_at=statement.sealed_at,
    )


def _break(seq: int, reason: str) -> Any:
    from archive.domain.journal import ChainBreak

    return ChainBreak(seq=seq, reason=reason)


def _matches(record: Record, query: SearchQuery) -> bool:
    m = record.metadata
    if query.title and query.title.lower() not in m.title.lower():
        return False
    if query.document_type and query.document_type != m.document_type:
        return False
    if query.originating_service and query.originating_service != m.originating_service:
        return False
    if query.keyword and query.keyword.lower() not in (k.lower() for k in m.keywords):
        return False
    if query.date_from and m.document_date < query.date_from:
        return False
    if query.date_to and m.document_date > query.date_to:
        return False
    return not (query.status and query.status != record.status)


__all__ = ["SYSTEM", "ArchiveService", "Envelope", "SearchQuery", "parapheur_record_id"]
