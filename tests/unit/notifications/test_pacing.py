"""The delivery consumer's NAK delay: the one the delivery handler asked for, else backoff."""

from __future__ import annotations

import asyncio

import pytest

from mutualis_kernel.events import Envelope, Event
from notifications import manifest
from notifications.domain.events import NotificationRequested
from notifications.entrypoints.pacing import PacedConsumerSpec, paced
from notifications.service_layer.handlers import RetryLater

ENVELOPE: Envelope[Event] = Envelope(
    data=NotificationRequested(
        notification_id="n1", kind="message", category="general", channel="email"
    ),
    tenant="bordeaux",
    aggregate_id="n1",
)


async def fails_with(error: Exception) -> None:
    async def handler(envelope: Envelope[Event]) -> None:
        raise error

    with pytest.raises(type(error)):
        await paced(handler)(ENVELOPE)


async def test_the_nak_delay_is_the_handlers_then_the_backoff_again() -> None:
    spec = PacedConsumerSpec.like(manifest.DELIVERIES, ack_wait_s=5.0)
    assert spec.ack_wait_s == 5.0
    assert spec.durable == manifest.DELIVERIES.durable
    await fails_with(RetryLater("451 busy", delay_s=7.5))
    # As the kernel consumer does it: handler, then delay_after, in the same task.
    assert spec.delay_after(1) == 7.5
    assert spec.delay_after(1) == manifest.DELIVERIES.backoff_s[0]  # used once, then gone
    await fails_with(RetryLater("no delay given"))
    assert spec.delay_after(3) == manifest.DELIVERIES.backoff_s[2]
    await fails_with(RuntimeError("a bug"))
    assert spec.delay_after(2) == manifest.DELIVERIES.backoff_s[1]


async def test_a_delay_asked_in_one_task_does_not_leak_into_another() -> None:
    spec = PacedConsumerSpec.like(manifest.DELIVERIES)

    async def lane(delay: float | None) -> float:
        await fails_with(RetryLater("x", delay_s=delay))
        await asyncio.sleep(0)  # let the other lane run in between
        return spec.delay_after(1)

    # Concurrent lanes, as the consumer runs several aggregates at once (one task each).
    first, second = await asyncio.gather(lane(2.0), lane(None))
    assert (first, second) == (2.0, manifest.DELIVERIES.backoff_s[0])
