"""The journal and its seals on the ARCHIVE_JOURNAL stream, one subject per tenant.

`archive.journal.<tenant>` holds the chained entries in order; an append sends
`Nats-Expected-Last-Subject-Sequence` = the stream sequence of the entry it chains to, so two
writers racing for the same tenant cannot fork the chain: the loser re-reads and chains again.
Every append carries a `Nats-Msg-Id`; after a lost ack, the retry recognises its own entry at
the head of the chain instead of appending it twice. Callers that need idempotency across
process restarts (an ingest retried an hour later) pass an `entry_id`, indexed in the
`archive_journal_ids` KV bucket. Seals go to `archive.seals.<tenant>` the same way.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from nats.js import JetStreamContext
from nats.js.errors import BadRequestError, KeyNotFoundError, NotFoundError
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanContext
from pydantic import BaseModel, ConfigDict

from archive.domain.journal import JournalEntry, Operation, SealStatement, next_entry
from archive.domain.model import utcnow
from archive.manifest import JOURNAL_IDS, JOURNAL_STREAM, journal_subject, seals_subject
from mutualis_kernel.bus.kv import PatientKeyValue, stream_messages
from mutualis_kernel.bus.publisher import (
    PATIENT_ATTEMPT_S,
    WRONG_LAST_SEQUENCE,
    attempt_limit,
    is_transient,
    with_retries,
)

MSG_ID = "Nats-Msg-Id"
#: How long a journal read or write waits out a leader election (4.5-7 s here) before the
#: request fails with 503.
JOURNAL_DEADLINE_S = 15.0


class Seal(BaseModel):
    """A stored seal: the exact timestamped statement, the TSA's reply and its chain."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    number: int
    statement: str  # canonical JSON, the exact bytes timestamped (UTF-8)
    tsr_b64: str
    tsa_chain_pem: str

    @property
    def statement_bytes(self) -> bytes:
        return self.statement.encode()

    @property
    def tsr(self) -> bytes:
        return base64.b64decode(self.tsr_b64)

    def parsed(self) -> SealStatement:
        return SealStatement.model_validate_json(self.statement)


class JournalUnavailable(Exception):
    pass


class JetStreamJournal:
    def __init__(self, js: JetStreamContext, *, attempts: int = 50) -> None:
        self._js = js
        self._attempts = attempts
        self._ids: PatientKeyValue | None = None

    async def _index(self) -> PatientKeyValue:
        # Looked up once: `js.key_value()` asks for the bucket's stream info on every call.
        if self._ids is None:
            self._ids = PatientKeyValue(await self._js.key_value(JOURNAL_IDS))
        return self._ids

    async def _last(self, subject: str) -> tuple[bytes | None, int, dict[str, str]]:
        try:
            message = await with_retries(
                lambda: self._js.get_last_msg(JOURNAL_STREAM, subject),
                JOURNAL_DEADLINE_S,
                f"last message on {subject}",
                attempt_timeout_s=PATIENT_ATTEMPT_S,
            )
        except NotFoundError:
            return None, 0, {}
        return message.data or b"", message.seq or 0, dict(message.headers or {})

    async def _message(self, seq: int) -> bytes:
        message = await with_retries(
            lambda: self._js.get_msg(JOURNAL_STREAM, seq),
            JOURNAL_DEADLINE_S,
            f"journal message {seq}",
            attempt_timeout_s=PATIENT_ATTEMPT_S,
        )
        return message.data or b""

    async def head(self, tenant: str) -> JournalEntry | None:
        data, _, _ = await self._last(journal_subject(tenant))
        return JournalEntry.model_validate_json(data) if data else None

    async def append(
        self,
        tenant: str,
        operation: Operation,
        *,
        record_id: str | None = None,
        details: dict[str, Any] | None = None,
        entry_id: str | None = None,
        time: datetime | None = None,
    ) -> JournalEntry:
        subject = journal_subject(tenant)
        kv = await self._index()
        index_key = f"{tenant}.{entry_id}" if entry_id else None
        head: tuple[bytes | None, int, dict[str, str]] | None = None
        if index_key is not None:
            # The idempotency lookup and the chain head at once: an entry already written is
            # rare (a retried operation), and the head is needed in every other case.
            known, head = await asyncio.gather(self._indexed(kv, index_key), self._last(subject))
            if known is not None:
                return known
        msg_id = f"{tenant}:{entry_id or uuid.uuid4()}"
        for attempt in range(1, self._attempts + 1):
            data, last_seq, headers = head if head is not None else await self._last(subject)
            head = None  # a retry chains after whatever is the head by then
            if headers.get(MSG_ID) == msg_id and data:
                entry = JournalEntry.model_validate_json(data)  # our earlier attempt landed
                break
            previous = JournalEntry.model_validate_json(data) if data else None
            entry = next_entry(
                previous,
                time=time or utcnow(),
                tenant=tenant,
                operation=operation,
                record_id=record_id,
                details=details or {},
            )
            headers = {MSG_ID: msg_id, "Nats-Expected-Last-Subject-Sequence": str(last_seq)}
            # The operation's trace rides along, outside the hashed entry, so the seal that
            # later covers this entry can link back to the journey that caused it.
            propagate.inject(headers)
            try:
                # Resent when unanswered (a leader that stepped down): the message id and
                # the expected sequence make a second landing impossible.
                ack = await self._js.publish(
                    subject,
                    entry.model_dump_json().encode(),
                    timeout=attempt_limit(attempt),
                    headers=headers,
                )
            except BadRequestError as error:
                if error.err_code in WRONG_LAST_SEQUENCE:
                    continue  # another writer chained first: chain after it
                raise
            except Exception as error:
                if is_transient(error):
                    await asyncio.sleep(0.2)
                    continue
                raise
            if ack.duplicate:
                # JetStream already had this msg id: ours is in the chain, read it back.
                entry = JournalEntry.model_validate_json(await self._message(ack.seq))
            if index_key is not None:
                await kv.put(index_key, str(ack.seq).encode())
            return entry
        else:
            raise JournalUnavailable(f"could not append to the journal of {tenant}")
        if index_key is not None:
            _, seq, _ = await self._last(subject)
            await kv.put(index_key, str(seq).encode())
        return entry

    async def _indexed(self, kv: PatientKeyValue, key: str) -> JournalEntry | None:
        try:
            found = await kv.get(key)
        except KeyNotFoundError:
            return None
        return JournalEntry.model_validate_json(
            await self._message(int((found.value or b"0").decode()))
        )

    async def raw_entries(self, tenant: str) -> AsyncIterator[tuple[int, bytes]]:
        """(stream sequence, body) of every message on the tenant's journal subject, in order."""
        async for item in self._read(journal_subject(tenant)):
            yield item

    async def traces_after(self, tenant: str, after_seq: int) -> list[SpanContext]:
        """The trace contexts of the operations journaled after stream sequence `after_seq`."""
        found: list[SpanContext] = []
        async for seq, _, headers in self._read_messages(journal_subject(tenant)):
            if seq <= after_seq or "traceparent" not in headers:
                continue
            context = trace.get_current_span(propagate.extract(headers)).get_span_context()
            if context.is_valid:
                found.append(context)
        return found

    async def entries(self, tenant: str) -> AsyncIterator[JournalEntry]:
        async for _, body in self.raw_entries(tenant):
            yield JournalEntry.model_validate_json(body)

    async def _read(self, subject: str) -> AsyncIterator[tuple[int, bytes]]:
        async for seq, data, _ in self._read_messages(subject):
            yield seq, data

    async def _read_messages(
        self, subject: str
    ) -> AsyncIterator[tuple[int, bytes, dict[str, str]]]:
        # The kernel's reader: an exact count from the server, and consumer creation that
        # waits out an election (a verify during a failover must not fail).
        async for message in stream_messages(self._js, JOURNAL_STREAM, subject):
            yield message.metadata.sequence.stream, message.data, dict(message.headers or {})

    # -- seals ---------------------------------------------------------------------------------

    async def last_seal(self, tenant: str) -> tuple[Seal | None, int]:
        data, seq, _ = await self._last(seals_subject(tenant))
        return (Seal.model_validate_json(data) if data else None), seq

    async def store_seal(self, tenant: str, seal: Seal, expected_seq: int) -> bool:
        """Store the next seal; False when another instance sealed first.

        Retried through an election; a refusal after an unanswered attempt looks at the last
        seal, which is ours when that attempt landed.
        """
        msg_id = f"{tenant}:seal:{seal.number}:{seal.parsed().digest}"
        attempts = 0

        async def attempt() -> bool:
            nonlocal attempts
            attempts += 1
            try:
                await self._js.publish(
                    seals_subject(tenant),
                    seal.model_dump_json().encode(),
                    timeout=attempt_limit(attempts),
                    headers={
                        MSG_ID: msg_id,
                        "Nats-Expected-Last-Subject-Sequence": str(expected_seq),
                    },
                )
            except BadRequestError as error:
                if error.err_code not in WRONG_LAST_SEQUENCE:
                    raise
                if attempts > 1:
                    _, _, headers = await self._last(seals_subject(tenant))
                    return headers.get(MSG_ID) == msg_id
                return False
            return True

        return await with_retries(attempt, JOURNAL_DEADLINE_S, f"seal {seal.number} of {tenant}")

    async def seals(self, tenant: str) -> AsyncIterator[Seal]:
        async for _, body in self._read(seals_subject(tenant)):
            yield Seal.model_validate_json(body)

    async def tenants(self) -> list[str]:
        """Tenants that have a journal (from the stream's subject counts)."""
        info = await self._js.stream_info(JOURNAL_STREAM, subjects_filter="archive.journal.>")
        subjects = info.state.subjects or {}
        return sorted(s.split(".", 2)[2] for s in subjects)
