"""Reports the service layer returns to the API and the CLI (pydantic, JSON-ready)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from archive.domain.journal import ChainBreak


class ObjectProblem(BaseModel):
    record_id: str
    object_name: str
    reason: str


class SealProblem(BaseModel):
    number: int
    reason: str


class VerifyReport(BaseModel):
    """`mutualis archive verify`: the chain, every seal's token, every object's fixity."""

    tenant: str
    ok: bool
    entries_checked: int = 0
    seals_checked: int = 0
    objects_checked: int = 0
    first_broken_entry: ChainBreak | None = None
    broken_seals: list[SealProblem] = Field(default_factory=list)
    broken_objects: list[ObjectProblem] = Field(default_factory=list)
    unsealed_entries: int = 0
    checked_at: datetime

    def summary(self) -> str:
        if self.ok:
            return (
                f"{self.tenant}: OK ({self.entries_checked} entries, {self.seals_checked} seals, "
                f"{self.objects_checked} objects)"
            )
        parts = []
        if self.first_broken_entry:
            parts.append(
                f"journal entry {self.first_broken_entry.seq}: {self.first_broken_entry.reason}"
            )
        parts += [f"seal {p.number}: {p.reason}" for p in self.broken_seals]
        parts += [
            f"object {p.object_name} ({p.record_id}): {p.reason}" for p in self.broken_objects
        ]
        return f"{self.tenant}: BROKEN - " + "; ".join(parts)


class SealInfo(BaseModel):
    tenant: str
    number: int
    first_seq: int
    last_seq: int
    merkle_root: str
    digest: str
    prev_seal_digest: str
    sealed_at: datetime


class FixityResult(BaseModel):
    tenant: str
    record_id: str
    ok: bool
    sha256: str | None = None
    reason: str | None = None


class DisposalResult(BaseModel):
    disposal_id: str
    tenant: str
    record_ids: list[str]
    certificate_record_id: str
    approved_by: str
