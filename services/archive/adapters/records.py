"""Records: event-sourced on ARCHIVE_EVENTS (the system of record), projected into the
`archive_records` KV bucket (`<tenant>.<record_id>`) for search by metadata fields."""

from __future__ import annotations

from collections.abc import AsyncIterator

from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError

from archive.domain import record as record_rules
from archive.domain.model import Record
from archive.manifest import RECORDS
from mutualis_kernel.bus.kv import PatientKeyValue, current_entries
from mutualis_kernel.bus.store import EventStore


class RecordRepository:
    def __init__(self, js: JetStreamContext, store: EventStore) -> None:
        self._js = js
        self._store = store
        self._kv: PatientKeyValue | None = None

    async def _projection(self) -> PatientKeyValue:
        # Looked up once: `js.key_value()` asks for the bucket's stream info on every call.
        if self._kv is None:
            self._kv = PatientKeyValue(await self._js.key_value(RECORDS))
        return self._kv

    async def load(self, tenant: str, record_id: str) -> tuple[Record | None, int]:
        """The record rebuilt from its events, and the version to append at."""
        history = await self._store.load("archive", tenant, "record", record_id)
        record = record_rules.replay(tenant, (envelope.data for envelope in history.events))
        return record, history.version

    async def project(self, record: Record) -> None:
        kv = await self._projection()
        await kv.put(f"{record.tenant}.{record.record_id}", record.model_dump_json().encode())

    async def projected(self, tenant: str, record_id: str) -> Record | None:
        kv = await self._projection()
        try:
            entry = await kv.get(f"{tenant}.{record_id}")
        except KeyNotFoundError:
            return None
        return Record.model_validate_json(entry.value or b"")

    async def all(self, tenant: str) -> AsyncIterator[Record]:
        """Every projected record of a tenant (one pass over `<tenant>.>`, no gets)."""
        async for entry in current_entries(self._js, RECORDS, f"{tenant}.>"):
            yield Record.model_validate_json(entry.value)
