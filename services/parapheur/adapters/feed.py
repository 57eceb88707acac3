"""Feeds the in-memory task board from PARAPHEUR_EVENTS with an ordered, ephemeral consumer.

Each instance reads the whole stream from the start (an ordered consumer: in order, no acks,
recreated by nats-py after a gap), then follows it; the board is `caught_up` once the
consumer has nothing pending and every message it delivered has been applied.
"""

from __future__ import annotations

import asyncio

import structlog
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from mutualis_kernel.events import InvalidEvent, decode
from parapheur.service_layer.projection import TaskBoard

log = structlog.get_logger("parapheur.feed")

STREAM = "PARAPHEUR_EVENTS"
FOLDER_EVENTS = "evt.parapheur.*.folder.>"


async def run_feed(js: JetStreamContext, board: TaskBoard, stop: asyncio.Event) -> None:
    handled = 0

    async def on_message(message: Msg) -> None:
        nonlocal handled
        sequence = message.metadata.sequence.stream
        try:
            envelope = decode(message.subject, message.headers, message.data)
        except InvalidEvent as error:
            log.warning("feed.undecodable", subject=message.subject, reason=error.reason)
        else:
            board.apply(envelope.tenant, envelope.aggregate_id, envelope.data, sequence)
        handled += 1

    subscription = await js.subscribe(
        FOLDER_EVENTS,
        stream=STREAM,
        ordered_consumer=True,
        cb=on_message,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
    )
    try:
        while not board.caught_up and not stop.is_set():
            # Caught up: nothing left for the consumer to deliver, and every delivered
            # message handled (the stream's last events may be other than folder events).
            consumer = await subscription.consumer_info()
            delivered = consumer.delivered.consumer_seq if consumer.delivered else 0
            if consumer.num_pending == 0 and handled >= (delivered or 0):
                board.caught_up = True
            else:
                await asyncio.sleep(0.05)
        await stop.wait()
    finally:
        await subscription.unsubscribe()
