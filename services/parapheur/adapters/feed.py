"""Feeds the in-memory task board from PARAPHEUR_EVENTS with an ordered, ephemeral consumer.

Each instance reads the whole stream from the start (an ordered consumer: in order, no acks,
recreated by nats-py after a gap), then follows it; the board is `caught_up` once it has
applied everything that was in the stream when the feed started.
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
    info = await js.stream_info(STREAM)
    target = info.state.last_seq
    if target == 0:
        board.caught_up = True

    async def on_message(message: Msg) -> None:
        sequence = message.metadata.sequence.stream
        try:
            envelope = decode(message.subject, message.headers, message.data)
        except InvalidEvent as error:
            log.warning("feed.undecodable", subject=message.subject, reason=error.reason)
        else:
            board.apply(envelope.tenant, envelope.aggregate_id, envelope.data, sequence)
        if sequence >= target:
            board.caught_up = True

    subscription = await js.subscribe(
        FOLDER_EVENTS,
        stream=STREAM,
        ordered_consumer=True,
        cb=on_message,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
    )
    try:
        while not board.caught_up and not stop.is_set():
            # Folder events may not be the stream's last ones (delegations): check the
            # consumer's position too.
            consumer = await subscription.consumer_info()
            if consumer.delivered is not None and (consumer.delivered.stream_seq or 0) >= target:
                board.caught_up = consumer.num_pending == 0
            await asyncio.sleep(0.05)
        await stop.wait()
    finally:
        await subscription.unsubscribe()
