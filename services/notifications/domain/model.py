"""Notifications and their delivery status machine, retry policy, preferences and rate limits.

A `Notification` is the ledger record of one message to one recipient on one channel. Its id
is derived from the idempotency key (cause event id + recipient + channel), so the same cause
handled twice, by any instance in any datacenter, names the same record.

Status machine::

    created -> sending -> delivered
                       -> temporary-failure -> sending (retry) ... -> permanent-failure
                       -> permanent-failure
                       -> sending (the claim's lease expired before its hand-off began)
    created -> permanent-failure   (refused before any attempt: opt-out, bad address)

`sending` has two steps, each recorded by compare-and-set: the attempt is *claimed* (with a
lease), then its *hand-off begins* (`handing_off_since`), right before the channel's point of
no return (SMTP DATA, the gateway request). A claim whose lease expired before its hand-off
began sent nothing and is claimed again; one whose hand-off began may have been accepted.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from notifications.domain.errors import InvalidAddress, InvalidTransition

Channel = Literal["email", "sms", "inapp"]
CHANNELS: tuple[Channel, ...] = ("email", "sms", "inapp")
Status = Literal["created", "sending", "delivered", "temporary-failure", "permanent-failure"]
TERMINAL: frozenset[str] = frozenset({"delivered", "permanent-failure"})

_ALLOWED: dict[str, frozenset[str]] = {
    "created": frozenset({"sending", "permanent-failure"}),
    "sending": frozenset({"sending", "delivered", "temporary-failure", "permanent-failure"}),
    "temporary-failure": frozenset({"sending", "permanent-failure"}),
    "delivered": frozenset(),
    "permanent-failure": frozenset(),
}

# Deliberately simple: one @, no spaces, a dotted domain. The relay is the real judge; this
# only catches what can never be delivered before it costs an attempt.
_EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
# E.164, with the French national form (0X XX XX XX XX) accepted and normalised.
_E164 = re.compile(r"^\+[1-9][0-9]{7,14}$")


def normalise_email(address: str) -> str:
    address = address.strip()
    if len(address) > 254 or not _EMAIL.match(address):
        raise InvalidAddress(f"not a deliverable email address: {address!r}")
    local, _, domain = address.partition("@")
    return f"{local}@{domain.lower()}"


def normalise_phone(number: str) -> str:
    compact = re.sub(r"[\s.\-()]", "", number)
    if re.fullmatch(r"0[1-9][0-9]{8}", compact):
        compact = "+33" + compact[1:]
    if not _E164.match(compact):
        raise InvalidAddress(f"not a valid phone number (E.164 or French national): {number!r}")
    return compact


def normalise_address(channel: Channel, address: str) -> str:
    if channel == "email":
        return normalise_email(address)
    if channel == "sms":
        return normalise_phone(address)
    return address


def idempotency_key(cause_id: str, recipient: str, channel: Channel) -> str:
    """The key that makes a notification happen once: the cause, who, and how."""
    return f"{cause_id}|{recipient}|{channel}"


def notification_id(key: str) -> str:
    # A hash keeps addresses out of ids, subjects and KV keys while staying deterministic.
    return hashlib.sha256(key.encode()).hexdigest()[:32]


class Content(BaseModel):
    """What the recipient sees, rendered from a template."""

    model_config = ConfigDict(frozen=True)

    subject: str = ""
    text: str = ""
    html: str | None = None
    sms: str = ""
    sms_segments: int = 0


#: Attempt outcomes that do not count as attempts: refused before any (legacy records), and
#: claims abandoned before their hand-off began (nothing was sent).
_NOT_ATTEMPTS = frozenset({"refused", "abandoned"})


class Attempt(BaseModel):
    """One attempt: `claimed`, then `handed-off`, then `delivered` or `failed` (or
    `abandoned`, when its claim expired before the hand-off began)."""

    model_config = ConfigDict(frozen=True)

    number: int
    at: datetime
    provider: str | None = None
    outcome: str
    detail: str = ""


class Notification(BaseModel):
    """The ledger record of one message; holds personal data, hence purgeable."""

    model_config = ConfigDict(frozen=True)

    id: str
    tenant: str
    kind: str
    category: str
    channel: Channel
    user_id: str | None = None
    address: str | None = None
    critical: bool = False
    cause_id: str
    content: Content = Field(default_factory=Content)
    status: Status = "created"
    reason: str = ""
    attempts: tuple[Attempt, ...] = ()
    sending_until: datetime | None = None
    #: When the current attempt's hand-off began; None while it is only claimed.
    handing_off_since: datetime | None = None
    message_id: str | None = None
    provider: str | None = None
    created_at: datetime
    updated_at: datetime
    erased: bool = False

    @property
    def attempt_count(self) -> int:
        return sum(1 for a in self.attempts if a.outcome not in _NOT_ATTEMPTS)

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def resend_is_safe(self) -> bool:
        """Whether an interrupted hand-off may simply be made again: only for the inbox,
        whose write is keyed by the notification id (a second one changes nothing)."""
        return self.channel == "inapp"

    def _to(self, status: Status, now: datetime, **changes: object) -> Notification:
        if status not in _ALLOWED[self.status]:
            raise InvalidTransition(f"{self.id}: {self.status} -> {status} is not allowed")
        return self.model_copy(update={"status": status, "updated_at": now, **changes})

    def _with_last_attempt(self, **changes: object) -> tuple[Attempt, ...]:
        if not self.attempts:
            return self.attempts
        return (*self.attempts[:-1], self.attempts[-1].model_copy(update=changes))

    def start_sending(self, now: datetime, lease: timedelta, provider: str) -> Notification:
        """Claim the next attempt; the lease says until when the claim is presumed alive.

        From `sending`, only a claim that expired before its hand-off began can be taken
        over: that attempt is recorded as abandoned and does not count.
        """
        attempts = self.attempts
        if self.status == "sending":
            if not self.can_be_reclaimed(now):
                raise InvalidTransition(f"{self.id}: its attempt is live or was handed off")
            attempts = self._with_last_attempt(outcome="abandoned")
        number = sum(1 for a in attempts if a.outcome not in _NOT_ATTEMPTS) + 1
        attempt = Attempt(number=number, at=now, provider=provider, outcome="claimed")
        return self._to(
            "sending",
            now,
            sending_until=now + lease,
            handing_off_since=None,
            provider=provider,
            attempts=(*attempts, attempt),
        )

    def begin_hand_off(self, now: datetime, provider: str) -> Notification:
        """The claimed attempt reaches its point of no return through `provider`."""
        if self.status != "sending" or self.hand_off_began:
            raise InvalidTransition(f"{self.id}: no claimed attempt waits for its hand-off")
        return self.model_copy(
            update={
                "handing_off_since": now,
                "provider": provider,
                "updated_at": now,
                "attempts": self._with_last_attempt(outcome="handed-off", provider=provider),
            }
        )

    def delivered(self, now: datetime, provider: str, message_id: str | None) -> Notification:
        return self._to(
            "delivered",
            now,
            provider=provider,
            message_id=message_id or self.message_id,
            sending_until=None,
            handing_off_since=None,
            reason="",
            attempts=self._with_last_attempt(outcome="delivered", provider=provider),
        )

    def failed(self, now: datetime, reason: str, *, permanent: bool) -> Notification:
        return self._to(
            "permanent-failure" if permanent else "temporary-failure",
            now,
            reason=reason,
            sending_until=None,
            handing_off_since=None,
            attempts=self._with_last_attempt(outcome="failed", detail=reason[:500]),
        )

    def refused(self, now: datetime, reason: str) -> Notification:
        """Given up before any attempt (opted out, no address, bad input)."""
        return self._to("permanent-failure", now, reason=reason)

    def lease_expired(self, now: datetime) -> bool:
        return self.status == "sending" and (
            self.sending_until is None or now >= self.sending_until
        )

    @property
    def hand_off_began(self) -> bool:
        # Entries written before the two-step claim (last attempt `sent`) claimed and handed
        # off in one step: they count as handed off, the safe reading.
        legacy = bool(self.attempts) and self.attempts[-1].outcome == "sent"
        return self.status == "sending" and (self.handing_off_since is not None or legacy)

    def claim_abandoned(self, now: datetime) -> bool:
        """Claimed, but its instance stopped before the hand-off began: nothing was sent."""
        return self.lease_expired(now) and not self.hand_off_began

    def hand_off_interrupted(self, now: datetime) -> bool:
        """The hand-off began and was never settled: the relay may or may not have it."""
        return self.lease_expired(now) and self.hand_off_began

    def can_be_reclaimed(self, now: datetime) -> bool:
        """Whether another attempt may take over this expired one without risking a double."""
        return self.claim_abandoned(now) or (self.lease_expired(now) and self.resend_is_safe)

    def scrubbed(self, now: datetime) -> Notification:
        """The record without personal data: only what anonymous statistics need."""
        return self.model_copy(
            update={
                "user_id": None,
                "address": None,
                "content": Content(),
                "reason": self.reason if self.status != "permanent-failure" else "erased",
                "erased": True,
                "updated_at": now,
            }
        )


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff for temporary failures, up to `max_attempts` attempts in all."""

    max_attempts: int = 5
    first_delay_s: float = 1.0
    factor: float = 2.0
    max_delay_s: float = 300.0

    def delays(self) -> tuple[float, ...]:
        return tuple(
            min(self.first_delay_s * self.factor**n, self.max_delay_s)
            for n in range(max(self.max_attempts - 1, 1))
        )

    def delay_after(self, attempts: int) -> float:
        delays = self.delays()
        return delays[min(max(attempts, 1), len(delays)) - 1]

    def gives_up_after(self, attempts: int) -> bool:
        return attempts >= self.max_attempts


class Preferences(BaseModel):
    """A user's opt-ins and opt-outs, per category and channel; absent means the default (in)."""

    model_config = ConfigDict(frozen=True)

    opted_out: dict[str, tuple[Channel, ...]] = Field(default_factory=dict)

    def allows(self, category: str, channel: Channel, *, critical: bool) -> bool:
        # Security messages go out whatever the user chose: missing one costs more.
        if critical:
            return True
        return channel not in self.opted_out.get(
            category, ()
        ) and channel not in self.opted_out.get("*", ())


@dataclass
class TokenBucket:
    """A per-tenant token bucket: `rate_per_s` refill, `capacity` burst. It delays, never drops."""

    rate_per_s: float
    capacity: float
    tokens: float = field(default=-1.0)
    updated: float = 0.0

    def __post_init__(self) -> None:
        if self.tokens < 0:
            self.tokens = self.capacity

    def take(self, now: float) -> float:
        """Take one token; return 0 if granted, else how long to wait before asking again."""
        if self.updated:
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate_per_s)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate_per_s


def utcnow() -> datetime:
    return datetime.now(UTC)
