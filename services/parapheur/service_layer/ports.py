"""The ports the service layer needs; adapters implement them on JetStream and mutualis_trust.

Kept as protocols so the handlers read the same whether a test wires a small in-process
adapter or the composition root wires the real ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Literal, Protocol

from parapheur.domain.events import CircuitSpec
from parapheur.domain.model import Delegation, Folder


class InvalidDocument(Exception):
    """An upload that is not a usable PDF (malformed, encrypted, not a PDF)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class SignatureRequest:
    tenant: str
    folder_id: str
    title: str
    step: int
    kind: Literal["signature", "seal"]
    #: The user id of the signer, or the tenant for a seal.
    signer: str
    on_behalf_of: str | None
    reason: str
    location: str
    field_name: str
    #: The signer's name from identity, for their certificate and the signature; None for a
    #: seal, or when identity gave none (the certificate then names the user id).
    signer_name: str | None = None


@dataclass(frozen=True)
class SignatureApplied:
    field_name: str
    certificate_subject: str
    certificate_sha256: str
    level: str
    #: The timestamp's time (the TSA's genTime) when there is one, else the signer's clock.
    signed_at: datetime
    timestamp_at: datetime | None


class DocumentSigner(Protocol):
    """Adds one incremental PAdES signature to `pdf_in`, writing the result to `pdf_out`."""

    async def sign(
        self, request: SignatureRequest, pdf_in: Path, pdf_out: Path
    ) -> SignatureApplied: ...


class PdfInspector(Protocol):
    def check(self, path: Path) -> None:
        """Raise `InvalidDocument` unless `path` is a readable, unencrypted PDF."""


class DocumentStore(Protocol):
    async def put(self, name: str, source: BinaryIO, content_type: str) -> None: ...

    async def get_into(self, name: str, target: BinaryIO) -> None: ...

    async def delete(self, name: str) -> None: ...


class CircuitRepository(Protocol):
    async def get(self, tenant: str, circuit_id: str) -> CircuitSpec | None: ...

    async def put(self, tenant: str, circuit: CircuitSpec) -> None: ...

    async def delete(self, tenant: str, circuit_id: str) -> bool: ...

    async def list(self, tenant: str) -> Sequence[CircuitSpec]: ...


class DelegationRepository(Protocol):
    async def put(self, tenant: str, delegation: Delegation) -> None: ...

    async def get(self, tenant: str, delegation_id: str) -> Delegation | None: ...

    async def list(self, tenant: str) -> Sequence[Delegation]: ...


class DeadlineScheduler(Protocol):
    async def schedule(
        self, tenant: str, folder_id: str, which: Literal["reminder", "overdue"], at: datetime
    ) -> None: ...


@dataclass
class LoadedFolder:
    folder: Folder
    version: int


class FolderRepository(Protocol):
    async def load(self, tenant: str, folder_id: str) -> LoadedFolder: ...

    async def save(self, loaded: LoadedFolder) -> int:
        """Append the folder's pending events; the first one checks `loaded.version`."""
        ...
