"""What the service layer needs from the outside world: channels that send, and their errors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class DeliveryError(Exception):
    """A channel refused or failed; `permanent` when trying again cannot help."""

    def __init__(self, reason: str, *, permanent: bool, provider: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent
        self.provider = provider


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
    async def send(self, email: OutgoingEmail) -> Accepted: ...


class SmsSender(Protocol):
    async def send(self, sms: OutgoingSms) -> Accepted: ...
