"""The delivery consumer's NAK delays, chosen by the delivery handler rather than by backoff.

The kernel's consumer NAKs a failed message after `ConsumerSpec.delay_after(deliveries)`: a
backoff by delivery count. For deliveries that count is the wrong clock: a request sent back
by the rate limit or by another instance's live attempt is a delivery, not a failed attempt.
So the delivery handler says when to look again (`RetryLater.delay_s`: the retry policy's
backoff after a temporary failure, the rate limit's exact wait, the rest of a live lease),
and `PacedConsumerSpec.delay_after` answers with it.

How the delay travels: the kernel awaits the handler and then calls `delay_after` in the
same asyncio task, so a context variable set when the handler raises is what `delay_after`
reads (and clears). Without a delay, the spec's own backoff applies. This stands in for a
kernel feature (a handler exception carrying its NAK delay, e.g. `RetryAfter(delay_s)`); once
the kernel has one, this module goes.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, fields

from mutualis_kernel.bus.consumer import Handler
from mutualis_kernel.bus.spec import ConsumerSpec
from mutualis_kernel.events import Envelope, Event
from notifications.service_layer.handlers import RetryLater

_chosen_delay: ContextVar[float | None] = ContextVar("notifications_nak_delay", default=None)


@dataclass(frozen=True)
class PacedConsumerSpec(ConsumerSpec):
    """A `ConsumerSpec` whose NAK delay is the one the handler asked for, if it asked."""

    def delay_after(self, deliveries: int) -> float:
        chosen = _chosen_delay.get()
        if chosen is None:
            return super().delay_after(deliveries)
        _chosen_delay.set(None)
        return max(chosen, 0.0)

    @classmethod
    def like(cls, spec: ConsumerSpec, **changes: object) -> PacedConsumerSpec:
        values: dict[str, object] = {f.name: getattr(spec, f.name) for f in fields(spec)}
        return cls(**{**values, **changes})  # type: ignore[arg-type]


def paced(handler: Handler) -> Handler:
    """`handler`, passing the delay of a `RetryLater` it raises on to `PacedConsumerSpec`."""

    async def handle(envelope: Envelope[Event]) -> None:
        _chosen_delay.set(None)  # nothing left over from an earlier message of this task
        try:
            await handler(envelope)
        except RetryLater as error:
            if error.delay_s is not None:
                _chosen_delay.set(error.delay_s)
            raise

    return handle
