"""The hash-chained journal and its seals, as pure functions.

An entry is `{seq, time, tenant, operation, record_id, details, prev_hash}`; its hash is the
SHA-256 of its canonical JSON (sorted keys, no spaces, UTF-8), so each entry commits to the one
before. A seal commits to a range of entries through their Merkle root (RFC 6962 tree hashing)
and to the previous seal through its digest; the seal *statement* (canonical JSON) is the exact
byte string a TSA timestamps, which is what `openssl ts -verify -data` is given.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

GENESIS = "0" * 64
SEAL_TYPE = "mutualis.archive.seal.v1"

Operation = Literal[
    "ingest",
    "access",
    "metadata",
    "fixity",
    "export",
    "import",
    "hold.placed",
    "hold.released",
    "disposal",
    "seal",
    "verify",
    "erasure.exempted",
]


def canonical(value: Any) -> bytes:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    ).encode()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class JournalEntry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    seq: int = Field(ge=1)
    time: datetime
    tenant: str
    operation: Operation
    record_id: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)
    prev_hash: str
    hash: str = ""

    def hashed_fields(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "time": self.time.isoformat(),
            "tenant": self.tenant,
            "operation": self.operation,
            "record_id": self.record_id,
            "details": self.details,
            "prev_hash": self.prev_hash,
        }

    def compute_hash(self) -> str:
        return sha256_hex(canonical(self.hashed_fields()))

    def sealed(self) -> JournalEntry:
        """This entry with its hash filled in."""
        return self.model_copy(update={"hash": self.compute_hash()})


def next_entry(
    previous: JournalEntry | None,
    *,
    time: datetime,
    tenant: str,
    operation: Operation,
    record_id: str | None,
    details: dict[str, Any],
) -> JournalEntry:
    return JournalEntry(
        seq=previous.seq + 1 if previous else 1,
        time=time,
        tenant=tenant,
        operation=operation,
        record_id=record_id,
        details=details,
        prev_hash=previous.hash if previous else GENESIS,
    ).sealed()


class ChainBreak(BaseModel):
    seq: int
    reason: str


def check_chain(
    entries: Sequence[JournalEntry], previous: JournalEntry | None = None
) -> ChainBreak | None:
    """The first broken entry of `entries` (which continue `previous`), or None if intact."""
    expected_seq = previous.seq + 1 if previous else 1
    prev_hash = previous.hash if previous else GENESIS
    for entry in entries:
        if entry.seq != expected_seq:
            return ChainBreak(
                seq=expected_seq, reason=f"expected entry {expected_seq}, found {entry.seq}"
            )
        if entry.prev_hash != prev_hash:
            return ChainBreak(seq=entry.seq, reason="prev_hash does not match the previous entry")
        if entry.compute_hash() != entry.hash:
            return ChainBreak(seq=entry.seq, reason="entry content does not match its hash")
        prev_hash = entry.hash
        expected_seq += 1
    return None


# -- Merkle tree (RFC 6962 section 2.1) -------------------------------------------------------


def _leaf(entry_hash: str) -> bytes:
    return hashlib.sha256(b"\x00" + bytes.fromhex(entry_hash)).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def merkle_root(entry_hashes: Sequence[str]) -> str:
    """RFC 6962 Merkle tree hash of the entries' hashes (hex)."""
    if not entry_hashes:
        return hashlib.sha256(b"").hexdigest()
    return _tree([_leaf(h) for h in entry_hashes]).hex()


def _tree(leaves: list[bytes]) -> bytes:
    if len(leaves) == 1:
        return leaves[0]
    split = 1
    while split * 2 < len(leaves):
        split *= 2
    return _node(_tree(leaves[:split]), _tree(leaves[split:]))


# -- seals -------------------------------------------------------------------------------------


class SealStatement(BaseModel):
    """What a seal asserts; its canonical JSON is the exact data the TSA timestamps."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: str = SEAL_TYPE
    tenant: str
    number: int = Field(ge=1)
    first_seq: int
    last_seq: int
    last_entry_hash: str
    merkle_root: str
    prev_seal_digest: str
    sealed_at: datetime

    def to_bytes(self) -> bytes:
        return canonical(self.model_dump(mode="json"))

    @property
    def digest(self) -> str:
        return sha256_hex(self.to_bytes())


def seal_statement(
    *,
    tenant: str,
    previous: SealStatement | None,
    entries: Sequence[JournalEntry],
    sealed_at: datetime,
) -> SealStatement:
    """The statement of the next seal over `entries` (the entries after the previous seal)."""
    if not entries:
        raise ValueError("a seal covers at least one entry")
    return SealStatement(
        tenant=tenant,
        number=previous.number + 1 if previous else 1,
        first_seq=entries[0].seq,
        last_seq=entries[-1].seq,
        last_entry_hash=entries[-1].hash,
        merkle_root=merkle_root([e.hash for e in entries]),
        prev_seal_digest=previous.digest if previous else GENESIS,
        sealed_at=sealed_at,
    )
