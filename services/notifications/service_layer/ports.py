"""What the service layer needs from the outside world: channels that send, and their errors.

A channel is given a `HandOff` callback with each message and must await it once the message
can no longer be taken back: just before the SMTP DATA command, just before the HTTP request
to an SMS gateway. The service layer records there that the hand-off began (a compare-and-set
on the ledger entry), so that a crash before it is known to have sent nothing and is safely
retried, while a crash after it is ambiguous. If the callback raises (another instance took
the attempt over), the channel sends nothing and lets the exception through.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

#: Awaited with the provider's name right before the point of no return; idempotent.
HandOff = Callable[[str], Awaitable[None]]


class DeliveryError(Exception):
    """A channel refused or failed; `permanent` when trying again cannot help."""

    def __init__(self, reason: str, *, permanent: bool, provider: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent
        self.provider = provider


class DeliveryAmbiguous(DeliveryError):
    """The connection broke after the relay or gateway may have taken the message.

    Never retried nor failed over: a second send could make two. Settled as a permanent
    failure whose reason says the outcome is unconfirmed (at-most-once).
    """

    def __init__(self, reason: str, provider: str) -> None:
        super().__init__(reason, permanent=True, provider=provider)


@dataclass(frozen=True)
class Accepted:
    provider: str
    message_id: str | None = None


@dataclass(frozen=True)
class OutgoingEmail:
    to: str
    subject: str
    text: str
    html: str | None
    message_id: str
    headers: dict[str, str]


@dataclass(frozen=True)
class OutgoingSms:
    to: str
    text: str
    reference: str
    tenant: str


class EmailSender(Protocol):
    async def send(self, email: OutgoingEmail, hand_off: HandOff) -> Accepted: ...


class SmsSender(Protocol):
    async def send(self, sms: OutgoingSms, hand_off: HandOff) -> Accepted: ...
