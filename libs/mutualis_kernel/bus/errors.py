"""Errors of the bus, in the domain's words rather than nats-py's."""

from __future__ import annotations


class ConcurrencyConflict(Exception):
    """Someone else appended to the aggregate since it was read: reload and decide again."""

    def __init__(self, aggregate_filter: str, expected: int, detail: str) -> None:
        super().__init__(f"{aggregate_filter}: expected version {expected}, {detail}")
        self.aggregate_filter = aggregate_filter
        self.expected = expected


class PublishTimeout(Exception):
    """The bus could not store the event before the publish deadline (no quorum for too long)."""


class Unprocessable(Exception):
    """Raised by a handler for a message it can never handle: dead-letter it now, no retries."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RetryAfter(Exception):
    """Raised by a handler that cannot act now and knows when to look again.

    The consumer sends the message back (NAK) with `delay_s` instead of its spec's backoff by
    delivery count: a rate limit's exact wait, the rest of another instance's lease, a retry
    policy of the handler's own. Without `delay_s` the spec's backoff applies. It is still a
    delivery, bounded by the spec's `max_deliver` like any other.
    """

    def __init__(self, reason: str, *, delay_s: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay_s = delay_s
