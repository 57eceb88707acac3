"""Orders given to the archive."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from archive.domain.model import RecordMetadata, Source

_NAMESPACE = uuid.UUID("2b1c7c1e-3f7a-4f6e-9a57-0c5a3d6f8e21")


def record_id_for(tenant: str, source: Source, cause: str) -> str:
    """The record id derived from what caused the ingest (a parapheur folder, an idempotency
    key, a package's unit): the same cause can never create two records."""
    return str(uuid.uuid5(_NAMESPACE, f"{tenant}/{source}/{cause}"))


@dataclass(frozen=True)
class Actor:
    """Who acts: a token's subject and roles (or a service component)."""

    subject: str
    roles: frozenset[str] = frozenset()


SYSTEM = Actor("system:archive", frozenset({"archivist"}))


@dataclass(frozen=True)
class Ingest:
    tenant: str
    metadata: RecordMetadata
    filename: str
    source: Source
    cause: str  # idempotency key / folder id / package unit
    by: Actor
    declared_sha256: str | None = None
    declared_sha512: str | None = None

    @property
    def record_id(self) -> str:
        return record_id_for(self.tenant, self.source, self.cause)
