"""Declarations of consumers: which stream, which subjects, how patient with failures."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ConsumerSpec:
    """A durable pull consumer, shared by every instance of its service in every datacenter.

    `max_deliver` bounds redeliveries; `backoff_s` spaces them (the last value repeats). A
    message still failing after `max_deliver` attempts is dead-lettered. `concurrency` > 1
    handles that many aggregates of a fetched batch at once (each aggregate's events still
    one after the other, in stream order): for handlers that mostly wait on I/O.
    """

    durable: str
    stream: str
    filter_subjects: tuple[str, ...]
    service: str
    description: str
    max_deliver: int = 6
    backoff_s: tuple[float, ...] = (0.5, 2.0, 5.0, 15.0, 30.0)
    #: Kept short: handlers still at work tell the server so (consumer.py, `_KeepAlive`), so
    #: this only decides how soon the work of a dead or frozen instance moves elsewhere.
    ack_wait_s: float = 15.0
    max_ack_pending: int = 1000
    batch: int = 64
    concurrency: int = 1

    def delay_after(self, deliveries: int) -> float:
        """How long to wait before the next attempt, after `deliveries` failed ones."""
        index = min(max(deliveries, 1), len(self.backoff_s)) - 1
        return self.backoff_s[index]
