"""Repositories on JetStream: folders in PARAPHEUR_EVENTS, circuits/delegations/erasures in KV.

Folders are event-sourced: loading reads the folder's subject filter from the stream leader,
saving appends the recorded events, the first one checked against the version that was read
(so of two actors deciding at once, one wins and the other gets `ConcurrentAction`).
Circuit types and delegations are configuration, read far more than written: one KV entry each,
keyed `<tenant>.<id>` so a tenant's entries are listed by a key filter.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError

from mutualis_kernel.bus.errors import ConcurrencyConflict
from mutualis_kernel.bus.kv import PatientKeyValue, current_entries, current_keys
from mutualis_kernel.bus.publisher import EventPublisher
from mutualis_kernel.bus.store import EventStore
from mutualis_kernel.events import Envelope, Event
from parapheur.domain import errors
from parapheur.domain.events import CircuitSpec
from parapheur.domain.model import Delegation, Folder
from parapheur.service_layer.ports import LoadedFolder
from parapheur.service_layer.projection import pseudonym

SERVICE = "parapheur"


class JetStreamFolders:
    def __init__(self, store: EventStore, publisher: EventPublisher) -> None:
        self._store = store
        self._publisher = publisher

    async def load(self, tenant: str, folder_id: str) -> LoadedFolder:
        history = await self._store.load(SERVICE, tenant, "folder", folder_id)
        folder = Folder.rebuild(folder_id, tenant, (e.data for e in history.events))
        return LoadedFolder(folder, history.version)

    async def history(self, tenant: str, folder_id: str) -> tuple[Envelope[Event], ...]:
        return (await self._store.load(SERVICE, tenant, "folder", folder_id)).events

    async def save(self, loaded: LoadedFolder) -> int:
        events = loaded.folder.collect()
        version = loaded.version
        for index, event in enumerate(events):
            try:
                stored = await self._publisher.append(
                    event,
                    tenant=loaded.folder.tenant,
                    aggregate_id=loaded.folder.id,
                    expected_version=version,
                )
            except ConcurrencyConflict:
                if index == 0:
                    raise errors.ConcurrentAction(
                        "someone acted on this folder at the same moment; reload it and retry"
                    ) from None
                # A follow-up raced another instance's repair of the same follow-up.
                break
            version = stored.sequence
        return version


def _key(tenant: str, ident: str) -> str:
    return f"{tenant}.{ident}"


class _Bucket:
    """A KV bucket's handle, looked up once: each lookup is a stream-info round trip, and the
    handle holds only names."""

    def __init__(self, js: JetStreamContext, bucket: str) -> None:
        self._js = js
        self._bucket = bucket
        self._kv: PatientKeyValue | None = None

    async def kv(self) -> PatientKeyValue:
        if self._kv is None:
            self._kv = PatientKeyValue(await self._js.key_value(self._bucket))
        return self._kv


class KeyValueCircuits:
    def __init__(self, js: JetStreamContext, bucket: str) -> None:
        self._js = js
        self._bucket = bucket
        self._handle = _Bucket(js, bucket)

    async def get(self, tenant: str, circuit_id: str) -> CircuitSpec | None:
        kv = await self._handle.kv()
        try:
            entry = await kv.get(_key(tenant, circuit_id))
        except KeyNotFoundError:
            return None
        return CircuitSpec.model_validate_json(entry.value or b"")

    async def put(self, tenant: str, circuit: CircuitSpec) -> None:
        kv = await self._handle.kv()
        await kv.put(_key(tenant, circuit.id), circuit.model_dump_json().encode())

    async def delete(self, tenant: str, circuit_id: str) -> bool:
        if await self.get(tenant, circuit_id) is None:
            return False
        kv = await self._handle.kv()
        await kv.delete(_key(tenant, circuit_id))
        return True

    async def list(self, tenant: str) -> Sequence[CircuitSpec]:
        values = await _tenant_values(self._js, self._bucket, tenant)
        circuits = [CircuitSpec.model_validate_json(value) for value in values]
        return sorted(circuits, key=lambda c: c.id)


class KeyValueDelegations:
    def __init__(self, js: JetStreamContext, bucket: str) -> None:
        self._js = js
        self._bucket = bucket
        self._handle = _Bucket(js, bucket)

    async def put(self, tenant: str, delegation: Delegation) -> None:
        kv = await self._handle.kv()
        body = {
            "id": delegation.id,
            "delegator": delegation.delegator,
            "delegate": delegation.delegate,
            "desks": sorted(delegation.desks),
            "starts_at": delegation.starts_at.isoformat(),
            "ends_at": delegation.ends_at.isoformat(),
            "revoked": delegation.revoked,
        }
        await kv.put(_key(tenant, delegation.id), json.dumps(body).encode())

    async def get(self, tenant: str, delegation_id: str) -> Delegation | None:
        kv = await self._handle.kv()
        try:
            entry = await kv.get(_key(tenant, delegation_id))
        except KeyNotFoundError:
            return None
        if not entry.value:
            return None
        return _delegation(json.loads(entry.value))

    async def list(self, tenant: str) -> Sequence[Delegation]:
        values = await _tenant_values(self._js, self._bucket, tenant)
        return [_delegation(json.loads(value)) for value in values]


def _delegation(body: dict[str, Any]) -> Delegation:
    return Delegation(
        id=body["id"],
        delegator=body["delegator"],
        delegate=body["delegate"],
        desks=frozenset(body["desks"]),
        starts_at=datetime.fromisoformat(body["starts_at"]),
        ends_at=datetime.fromisoformat(body["ends_at"]),
        revoked=body["revoked"],
    )


async def _tenant_values(js: JetStreamContext, bucket: str, tenant: str) -> list[bytes]:
    """Every live value under `<tenant>.*`, read in one pass (a get per key costs a round trip)."""
    return [entry.value async for entry in current_entries(js, bucket, f"{tenant}.*")]


class KeyValueErasures:
    """People erased by identity, whom folder views show under a pseudonym."""

    def __init__(self, js: JetStreamContext, bucket: str) -> None:
        self._js = js
        self._bucket = bucket
        self._handle = _Bucket(js, bucket)

    async def record(self, tenant: str, user_id: str) -> str:
        kv = await self._handle.kv()
        alias = pseudonym(user_id)
        digest = hashlib.sha256(user_id.encode()).hexdigest()
        await kv.put(_key(tenant, digest), alias.encode())
        return alias

    async def all(self) -> list[tuple[str, str]]:
        """Every (tenant, digest of user id) erased so far."""
        keys = await current_keys(self._js, self._bucket)
        return [(key.split(".", 1)[0], key.split(".", 1)[1]) for key in keys]
