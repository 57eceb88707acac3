"""Deadlines scheduled through NATS itself: JetStream message schedules, no cron process.

A folder's reminder and overdue notices are scheduled messages (`Nats-Schedule: @at <time>`,
NATS >= 2.12) on `parapheur.deadline.schedule.<tenant>.<folder>.<which>`. At that time the
server publishes the message to `parapheur.deadline.fire.<tenant>.<folder>.<which>`, which a
durable consumer shared by every instance turns into `reminder.due` / `folder.overdue` (the
folder aggregate records each once, so a redelivery adds nothing). Scheduling again on the same
subject replaces the previous schedule. The stream is created here because the kernel's
`StreamSpec` has no `allow_msg_schedules` yet.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Literal

import nats.errors
import structlog
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, StorageType, StreamConfig
from nats.js.errors import NotFoundError
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import Link

from mutualis_kernel.bus import pull
from mutualis_kernel.bus.publisher import publish_raw

_tracer = trace.get_tracer("parapheur")
log = structlog.get_logger("parapheur.deadlines")

STREAM = "PARAPHEUR_DEADLINES"
PREFIX = "parapheur.deadline"
DURABLE = "parapheur-deadlines"

Which = Literal["reminder", "overdue"]
OnDeadline = Callable[[str, str, Which], Awaitable[None]]


async def ensure_stream(js: JetStreamContext, replicas: int) -> None:
    config = StreamConfig(
        name=STREAM,
        description="Scheduled reminders and overdue notices of folders.",
        subjects=[f"{PREFIX}.>"],
        storage=StorageType.FILE,
        num_replicas=replicas,
        allow_msg_schedules=True,
        allow_msg_ttl=True,
        duplicate_window=120.0,
    )
    # Right after a cluster starts a peer may not be placed yet: be as patient as the runner.
    deadline = asyncio.get_running_loop().time() + 60
    while True:
        try:
            try:
                await js.stream_info(STREAM)
            except NotFoundError:
                await js.add_stream(config)
            return
        except Exception as error:
            if asyncio.get_running_loop().time() > deadline:
                raise
            log.warning("deadlines.stream_retry", error=repr(error))
            await asyncio.sleep(0.5)


class NatsDeadlines:
    def __init__(self, js: JetStreamContext, *, deadline_s: float = 15.0) -> None:
        self._js = js
        self._deadline_s = deadline_s

    async def schedule(self, tenant: str, folder_id: str, which: Which, at: datetime) -> None:
        # Schedules have a one-second resolution; one in the past would never fire.
        earliest = datetime.now(UTC) + timedelta(seconds=1)
        when = max(at.astimezone(UTC), earliest)
        # Round up: firing a fraction of a second early would find the folder not yet due.
        if when.microsecond:
            when = when.replace(microsecond=0) + timedelta(seconds=1)
        stamp = when.strftime("%Y-%m-%dT%H:%M:%SZ")
        headers = {
            "Nats-Schedule": f"@at {stamp}",
            "Nats-Schedule-Target": f"{PREFIX}.fire.{tenant}.{folder_id}.{which}",
        }
        # The server copies these headers onto the message it fires, so the reminder can
        # link back to the folder's trace.
        propagate.inject(headers)
        await publish_raw(
            self._js,
            f"{PREFIX}.schedule.{tenant}.{folder_id}.{which}",
            when.isoformat().encode(),
            headers,
            deadline_s=self._deadline_s,
        )


async def run_deadline_consumer(
    js: JetStreamContext, on_deadline: OnDeadline, stop: asyncio.Event
) -> None:
    """Turn fired schedules into domain events until `stop` is set."""
    await js.add_consumer(
        STREAM,
        ConsumerConfig(
            durable_name=DURABLE,
            filter_subject=f"{PREFIX}.fire.>",
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=30,
            max_deliver=-1,
        ),
    )
    subscription = await js.pull_subscribe_bind(DURABLE, stream=STREAM)
    try:
        while not stop.is_set():
            try:
                messages = await pull.fetch(subscription, 16, 0.5)
            except (TimeoutError, nats.errors.TimeoutError):
                continue
            except nats.errors.Error as error:
                log.warning("deadlines.fetch_failed", error=repr(error))
                await asyncio.sleep(0.25)
                continue
            for message in messages:
                parts = message.subject.split(".")
                if len(parts) != 6 or parts[5] not in ("reminder", "overdue"):
                    await message.term()
                    continue
                tenant, folder_id, which = parts[3], parts[4], parts[5]
                # A reminder is not a child of the submission (it may fire days later): a
                # trace of its own, linked to the folder's.
                scheduled = trace.get_current_span(propagate.extract(message.headers or {}))
                origin = scheduled.get_span_context()
                try:
                    with _tracer.start_as_current_span(
                        f"parapheur.deadline {which}",
                        context=Context(),
                        links=[Link(origin)] if origin.is_valid else [],
                        attributes={"mutualis.tenant": tenant},
                    ):
                        await on_deadline(tenant, folder_id, which)  # type: ignore[arg-type]
                except Exception as error:  # noqa: BLE001 - retried later, never fatal
                    log.warning("deadlines.handler_failed", error=repr(error))
                    await message.nak(delay=5)
                    continue
                await message.ack()
    finally:
        with contextlib.suppress(TimeoutError, nats.errors.Error):
            await subscription.unsubscribe()
