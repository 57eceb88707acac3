"""What each instance follows in memory: the task board from PARAPHEUR_EVENTS, and the erasure
set from the `parapheur_erasures` KV bucket.

Both ride on an ordered, ephemeral consumer (in order, no acks, recreated by nats-py after a
gap) that reads everything there is, then keeps following. The board is `caught_up` once the
consumer has nothing pending and every message it delivered has been applied; `/readyz` waits
for that.

Erasures are followed by every instance, not only by the one whose durable consumer handled
identity's `user.erased`: that consumer is shared, so only one instance sees each event, and
the others learn of the erasure from the bucket it wrote.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from mutualis_kernel.events import InvalidEvent, decode
from parapheur.service_layer.projection import TaskBoard

log = structlog.get_logger("parapheur.feed")

STREAM = "PARAPHEUR_EVENTS"
FOLDER_EVENTS = "evt.parapheur.*.folder.>"
#: How often the initial replay is checked for completion.
CATCH_UP_POLL_S = 0.05


async def _follow(
    js: JetStreamContext,
    stream: str,
    subject: str,
    deliver_policy: DeliverPolicy,
    on_message: Callable[[Msg], None],
    on_caught_up: Callable[[], None],
    stop: asyncio.Event,
) -> None:
    """Deliver every message of `subject` to `on_message` until `stop`; `on_caught_up` once
    the messages stored when the follow started have all been handled."""
    handled = 0

    async def handle(message: Msg) -> None:
        nonlocal handled
        try:
            on_message(message)
        finally:
            handled += 1

    subscription = await js.subscribe(
        subject,
        stream=stream,
        ordered_consumer=True,
        cb=handle,
        config=ConsumerConfig(deliver_policy=deliver_policy),
    )
    try:
        while not stop.is_set():
            # Caught up: nothing left for the consumer to deliver, and every delivered
            # message handled (the stream's last messages may be outside `subject`).
            consumer = await subscription.consumer_info()
            delivered = consumer.delivered.consumer_seq if consumer.delivered else 0
            if consumer.num_pending == 0 and handled >= (delivered or 0):
                on_caught_up()
                break
            await asyncio.sleep(CATCH_UP_POLL_S)
        await stop.wait()
    finally:
        await subscription.unsubscribe()


async def run_feed(js: JetStreamContext, board: TaskBoard, stop: asyncio.Event) -> None:
    def on_message(message: Msg) -> None:
        sequence = message.metadata.sequence.stream
        try:
            envelope = decode(message.subject, message.headers, message.data)
        except InvalidEvent as error:
            log.warning("feed.undecodable", subject=message.subject, reason=error.reason)
            return
        board.apply(envelope.tenant, envelope.aggregate_id, envelope.data, sequence)

    def caught_up() -> None:
        board.caught_up = True

    await _follow(js, STREAM, FOLDER_EVENTS, DeliverPolicy.ALL, on_message, caught_up, stop)


async def run_erasure_feed(
    js: JetStreamContext, bucket: str, board: TaskBoard, stop: asyncio.Event
) -> None:
    """Apply every erasure recorded in `bucket` (keys `<tenant>.<sha256 of user id>`), past and
    future, to this instance's views."""
    prefix = f"$KV.{bucket}."

    def on_message(message: Msg) -> None:
        # A deleted or purged key does not bring a person back: erasure is not undone, and
        # the bucket is only ever written by `KeyValueErasures.record`.
        if (message.headers or {}).get("KV-Operation") in ("DEL", "PURGE"):
            return
        tenant, _, digest = message.subject.removeprefix(prefix).partition(".")
        if tenant and digest:
            board.erase_digest(tenant, digest)

    await _follow(
        js,
        f"KV_{bucket}",
        f"{prefix}>",
        DeliverPolicy.LAST_PER_SUBJECT,
        on_message,
        lambda: None,
        stop,
    )
