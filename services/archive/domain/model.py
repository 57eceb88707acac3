"""Records: their metadata, retention and communicability rules, and the record aggregate.

A record goes `active` -> `disposed`; while one or more legal holds are on it, it cannot be
disposed of. Nothing here performs I/O: the aggregate is rebuilt from its events and records
new ones, which the service layer appends with optimistic concurrency.
"""

from __future__ import annotations

import calendar
import re
from datetime import UTC, date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from archive.domain import errors

FinalAction = Literal["destroy", "keep", "review"]
RecordStatus = Literal["active", "disposed"]
Source = Literal["api", "parapheur", "import", "disposal"]

_DURATION = re.compile(r"^P(?:(\d{1,4})Y)?(?:(\d{1,4})M)?(?:(\d{1,5})D)?$")

#: Roles that see a record before its communicability delay has run out.
PRIVILEGED_ROLES = frozenset({"archivist", "platform-admin"})


class _Value(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def parse_duration(value: str) -> tuple[int, int, int]:
    """(years, months, days) of an ISO 8601 duration limited to P[nY][nM][nD]."""
    match = _DURATION.match(value)
    if not match or value == "P":
        raise errors.InvalidMetadata(f"duration {value!r} is not of the form P10Y, P6M, P30D")
    years, months, days = (int(part or 0) for part in match.groups())
    return years, months, days


def add_duration(start: date, duration: str) -> date:
    """Calendar arithmetic: 29 February + P1Y is 28 February, 31 January + P1M is 28/29 February."""
    years, months, days = parse_duration(duration)
    month_index = start.month - 1 + months
    year = start.year + years + month_index // 12
    month = month_index % 12 + 1
    day = min(start.day, calendar.monthrange(year, month)[1])
    return date.fromordinal(date(year, month, day).toordinal() + days)


class RetentionRule(_Value):
    """How long a record is kept (from `start_date`) and what happens then."""

    duration: str = Field(description="ISO 8601 duration, e.g. P10Y")
    final_action: FinalAction
    start_date: date

    @field_validator("duration")
    @classmethod
    def _valid_duration(cls, value: str) -> str:
        parse_duration(value)
        return value

    @property
    def end_date(self) -> date:
        return add_duration(self.start_date, self.duration)


class RecordMetadata(_Value):
    """What the producer declares about a record (SEDA's descriptive + management metadata)."""

    title: str = Field(min_length=1, max_length=500)
    originating_service: str = Field(min_length=1, max_length=200)
    document_type: str = Field(min_length=1, max_length=200)
    document_date: date
    retention: RetentionRule
    communicability_delay: str = Field(
        default="P0D", description="Access restriction: ISO 8601 delay from the document date"
    )
    keywords: tuple[str, ...] = ()
    description: str = Field(default="", max_length=5000)

    @field_validator("communicability_delay")
    @classmethod
    def _valid_delay(cls, value: str) -> str:
        parse_duration(value)
        return value

    @property
    def communicable_from(self) -> date:
        return add_duration(self.document_date, self.communicability_delay)


class FormatInfo(_Value):
    """A format identified from the content's signature bytes, never from a file name."""

    mime_type: str
    name: str
    pdfa: bool = False


class ContentInfo(_Value):
    """The stored content of a record and its fixity values, computed at ingest."""

    object_name: str
    filename: str
    size: int
    sha256: str
    sha512: str
    format: FormatInfo


class Hold(_Value):
    hold_id: str
    reason: str
    placed_by: str
    placed_at: datetime


class Record(BaseModel):
    """The record aggregate's state, as the projection stores and the API shows it."""

    model_config = ConfigDict(extra="forbid")

    record_id: str
    tenant: str
    metadata: RecordMetadata
    content: ContentInfo
    source: Source
    source_ref: str
    ingested_by: str
    ingested_at: datetime
    status: RecordStatus = "active"
    holds: dict[str, Hold] = Field(default_factory=dict)
    disposed_at: datetime | None = None
    disposal_id: str | None = None

    @property
    def held(self) -> bool:
        return bool(self.holds)

    def visible_to(self, roles: frozenset[str], today: date) -> bool:
        """Communicability: a restricted record is hidden from roles not yet allowed to see it."""
        if roles & PRIVILEGED_ROLES:
            return True
        return today >= self.metadata.communicable_from

    def disposal_blocker(self, today: date) -> str | None:
        """Why this record may not be destroyed today; None when it may."""
        if self.status == "disposed":
            return "already disposed"
        rule = self.metadata.retention
        if rule.final_action == "keep":
            return "kept permanently"
        if rule.final_action == "review":
            return "final action is review: an archivist must decide"
        if today < rule.end_date:
            return f"retention runs until {rule.end_date.isoformat()}"
        if self.held:
            return f"under legal hold ({', '.join(sorted(self.holds))})"
        return None

    def eligible_for_disposal(self, today: date) -> bool:
        return self.disposal_blocker(today) is None

    def ensure_active(self) -> None:
        if self.status == "disposed":
            raise errors.RecordDisposed(f"record {self.record_id} was disposed of")


def utcnow() -> datetime:
    return datetime.now(UTC)
