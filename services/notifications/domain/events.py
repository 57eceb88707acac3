"""The notifications service's events, on `evt.notifications.<tenant>.notification.<id>.>`.

They carry no personal data (no address, no rendered text): the stream is kept forever,
while addresses and contents live in the purgeable delivery ledger. `user_id` is the
platform's pseudonymous account id, or None for a message sent to a bare address.
"""

from __future__ import annotations

from typing import Literal

from mutualis_kernel.events import Event, domain_event

Channel = Literal["email", "sms", "inapp"]


@domain_event("notifications", "notification.requested", aggregate="notification")
class NotificationRequested(Event):
    """A notification was decided (by a routing rule or an API call) and recorded in the ledger."""

    notification_id: str
    kind: str
    category: str
    channel: Channel
    user_id: str | None = None
    critical: bool = False
    cause_id: str | None = None


@domain_event("notifications", "notification.sent", aggregate="notification")
class NotificationSent(Event):
    """The notification was handed to a relay or gateway (attempt `attempt`)."""

    notification_id: str
    channel: Channel
    attempt: int
    provider: str


@domain_event("notifications", "notification.delivered", aggregate="notification")
class NotificationDelivered(Event):
    """The relay, gateway or inbox accepted the notification."""

    notification_id: str
    channel: Channel
    attempt: int
    provider: str
    message_id: str | None = None


@domain_event("notifications", "notification.failed", aggregate="notification")
class NotificationFailed(Event):
    """An attempt failed; `permanent` when no further attempt will be made."""

    notification_id: str
    channel: Channel
    attempt: int
    permanent: bool
    reason: str
