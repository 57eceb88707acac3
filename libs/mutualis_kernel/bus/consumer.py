"""Consuming events: durable pull consumers, explicit acks, bounded retries, dead letters.

One `EventConsumer` runs one `ConsumerSpec` for one service instance. Every instance in every
datacenter binds to the same durable consumer, so whichever survives takes over the work.

What happens to a message:
- decoded and handled -> ack;
- cannot be decoded (not our envelope, unknown type, invalid payload, tenant not matching
  its subject) or the handler raises `Unprocessable` -> dead-lettered, then terminated;
- the handler raises anything else -> NAK with the spec's backoff delay (or the delay of a
  `RetryAfter` it raised), until `max_deliver` attempts, then dead-lettered and terminated;
- the handler never returns (the instance dies or stalls in it, each time): the server,
  whose bound is one more than ours, delivers it once more and it is dead-lettered unrun.
Handlers must be idempotent: a message can be delivered again after a crash before its ack.
Operators replay a dead letter to `replay.<durable>`, which this consumer also reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import nats.errors
import structlog
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from opentelemetry import context as otel_context
from opentelemetry import metrics, propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from mutualis_kernel.bus import deadletter, pull
from mutualis_kernel.bus.errors import RetryAfter, Unprocessable
from mutualis_kernel.bus.publisher import is_transient, publish_raw
from mutualis_kernel.bus.spec import ConsumerSpec
from mutualis_kernel.events.envelope import Envelope, InvalidEvent, decode
from mutualis_kernel.events.registry import Event, EventCatalog, catalog
from mutualis_kernel.logging import handling_event
from mutualis_kernel.streams import REPLAY_STREAM

Handler = Callable[[Envelope[Any]], Awaitable[None]]

log = structlog.get_logger("mutualis_kernel.bus")
_tracer = trace.get_tracer("mutualis_kernel")
_meter = metrics.get_meter("mutualis_kernel")
_consumed = _meter.create_counter(
    "mutualis.events.consumed", unit="{event}", description="Events handled and acknowledged"
)
_redelivered = _meter.create_counter(
    "mutualis.events.redelivered", unit="{event}", description="Handler failures sent back"
)
_dead_lettered = _meter.create_counter(
    "mutualis.events.dead_lettered", unit="{event}", description="Messages dead-lettered"
)
_handler_duration = _meter.create_histogram(
    "mutualis.events.handler.duration", unit="s", description="Time spent in handlers"
)


class _InHand:
    """The messages a consumer's handlers hold, and since when; `keep_alive` tells the server
    of those held long (`+WPI`, in progress), every `interval` seconds.

    So `ack_wait` can stay short: a message held by an instance that died or froze goes to
    another one within `ack_wait`, however long a live instance may take (a 50 MiB ingest).
    One loop per consumer, not a timer per message: most handlers finish long before the
    first tick, and a timer set and cancelled for each of them was 3 µs an event.
    """

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._since: dict[int, tuple[Msg, float]] = {}  # by id: a Msg is not hashable

    def took(self, message: Msg) -> None:
        self._since[id(message)] = (message, time.monotonic())

    def done(self, message: Msg) -> None:
        self._since.pop(id(message), None)

    async def keep_alive(self) -> None:
        """Until cancelled: each message held `interval` or longer is touched once a tick, so
        the server hears of it at most 2 x `interval` after it was taken, then every tick."""
        while True:
            await asyncio.sleep(self.interval)
            now = time.monotonic()
            for message, since in list(self._since.values()):
                if now - since >= self.interval:
                    with contextlib.suppress(nats.errors.Error, TimeoutError):
                        await message.in_progress()


#: How long a stopping consumer waits for a late answer to its last pull request before it
#: hands back what arrived: the server counts a pull's expiry from when it got the request,
#: so on a loaded machine it may deliver just after the client stopped waiting.
RELEASE_GRACE_S = 0.05


async def release_unhandled(subscription: JetStreamContext.PullSubscription) -> int:
    """NAK (redeliver at once) what a pull subscription received but nobody fetched.

    Dropped with the subscription, such a message would wait out `ack_wait` before another
    instance got it: an email or an archived record late by 15 s in a rolling restart.
    Returns how many were handed back."""
    # nats-py keeps what arrived for a pull subscription in its queue until a fetch reads it.
    queue: asyncio.Queue[Msg] = subscription._sub._pending_queue
    released = 0
    while not queue.empty():
        message = queue.get_nowait()
        if not (message.reply or "").startswith("$JS.ACK."):
            continue  # a status (no messages, request expired): nothing to hand back
        try:
            await message.nak()
        except nats.errors.Error as error:
            log.debug("consumer.release_failed", error=repr(error))
            continue
        released += 1
    return released


def _aggregate_key(subject: str) -> str:
    # evt.<service>.<tenant>.<aggregate>.<id>.<entity>.<action> -> up to <id>
    return ".".join(subject.split(".", 5)[:5])


class EventConsumer:
    def __init__(
        self,
        js: JetStreamContext,
        spec: ConsumerSpec,
        handlers: Mapping[type[Event], Handler],
        *,
        known: EventCatalog = catalog,
        fetch_timeout_s: float = 1.0,
    ) -> None:
        self._js = js
        self.spec = spec
        self._handlers = {model.type_name(): handler for model, handler in handlers.items()}
        self._known = known
        self._in_hand = _InHand(spec.ack_wait_s / 3)
        self._fetch_timeout_s = fetch_timeout_s
        self._span_names: dict[str, str] = {}
        self._metric_attributes = {"messaging.consumer.group.name": spec.durable}
        self._per_type_attributes: dict[str, dict[str, str]] = {}
        self.ready = asyncio.Event()

    # -- lifecycle -----------------------------------------------------------------------
    async def ensure(self) -> None:
        """Create or update the durable consumers (main and replay); idempotent."""
        spec = self.spec
        only = spec.filter_subjects[0] if len(spec.filter_subjects) == 1 else None
        # `name` as well as `durable_name`: the request then goes to
        # CONSUMER.CREATE.<stream>.<name>[.<filter>], and with one filter the server checks it
        # against the subject, so a NATS permission on that subject bounds what a service may
        # read from another's stream (runtime/security.py).
        await self._js.add_consumer(
            spec.stream,
            ConsumerConfig(
                name=spec.durable,
                durable_name=spec.durable,
                description=spec.description,
                deliver_policy=DeliverPolicy.ALL,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=spec.ack_wait_s,
                max_deliver=spec.max_deliver + 1,
                max_ack_pending=spec.max_ack_pending,
                filter_subject=only,
                filter_subjects=None if only else list(spec.filter_subjects),
            ),
        )
        await self._js.add_consumer(
            REPLAY_STREAM,
            ConsumerConfig(
                name=self.replay_durable,
                durable_name=self.replay_durable,
                description=f"Replayed dead letters for {spec.durable}",
                deliver_policy=DeliverPolicy.ALL,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=spec.ack_wait_s,
                max_deliver=spec.max_deliver + 1,
                filter_subject=deadletter.replay_subject(spec.durable),
            ),
        )

    @property
    def replay_durable(self) -> str:
        return deadletter.replay_durable(self.spec.durable)

    async def run(self, stop: asyncio.Event) -> None:
        """Pull and handle until `stop` is set; the batch in hand is finished first."""
        await self._until_ensured(stop)
        main = await self._js.pull_subscribe_bind(self.spec.durable, stream=self.spec.stream)
        replay = await self._js.pull_subscribe_bind(self.replay_durable, stream=REPLAY_STREAM)
        self.ready.set()
        log.info("consumer.started", consumer=self.spec.durable, stream=self.spec.stream)
        last_replay_poll = 0.0
        keeping_alive = asyncio.create_task(self._in_hand.keep_alive())
        try:
            while not stop.is_set():
                await self._pull(main, self.spec.batch, stop)
                # Replays are rare: look every few seconds, without a blocking wait.
                if time.monotonic() - last_replay_poll > 2.0:
                    last_replay_poll = time.monotonic()
                    await self._pull(replay, 16, stop, timeout=0.05, replayed=True)
            # Stopped (not cancelled): hand back what a late answer to the last pull brought.
            await asyncio.sleep(RELEASE_GRACE_S)
            for subscription in (main, replay):
                released = await release_unhandled(subscription)
                if released:
                    log.info("consumer.released", consumer=self.spec.durable, messages=released)
        finally:
            keeping_alive.cancel()
            for subscription in (main, replay):
                try:
                    await subscription.unsubscribe()
                except (TimeoutError, nats.errors.Error) as error:
                    log.debug("consumer.unsubscribe_failed", error=str(error))
            log.info("consumer.stopped", consumer=self.spec.durable)

    async def _until_ensured(self, stop: asyncio.Event) -> None:
        delay = 0.2
        while True:
            try:
                await self.ensure()
                return
            except Exception as error:
                # Any JetStream API error at start-up (no quorum yet, stream still being
                # created by another instance) is worth another try while we are not stopped.
                if stop.is_set():
                    raise
                log.warning("consumer.ensure_retry", consumer=self.spec.durable, error=repr(error))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _pull(
        self,
        subscription: JetStreamContext.PullSubscription,
        batch: int,
        stop: asyncio.Event,
        *,
        timeout: float | None = None,
        replayed: bool = False,
    ) -> None:
        try:
            messages = await pull.fetch(subscription, batch, timeout or self._fetch_timeout_s)
        except (TimeoutError, nats.errors.TimeoutError):
            return
        except Exception as error:
            if not is_transient(error) and not isinstance(error, nats.errors.Error):
                raise
            # During a leader election pulls fail for a few seconds; wait and pull again.
            log.warning("consumer.fetch_failed", consumer=self.spec.durable, error=repr(error))
            await asyncio.sleep(0.25)
            return
        if self.spec.concurrency <= 1 or len(messages) == 1:
            for message in messages:
                await self.handle(message, replayed=replayed)
            return
        await self._handle_concurrently(messages, replayed=replayed)

    async def _handle_concurrently(self, messages: list[Msg], *, replayed: bool) -> None:
        # Events of one aggregate (one subject up to its id) keep their order; different
        # aggregates proceed side by side, at most `concurrency` at a time.
        lanes: dict[str, list[Msg]] = {}
        for message in messages:
            lanes.setdefault(_aggregate_key(message.subject), []).append(message)
        slots = asyncio.Semaphore(self.spec.concurrency)

        async def run_lane(lane: list[Msg]) -> None:
            async with slots:
                for message in lane:
                    await self.handle(message, replayed=replayed)

        await asyncio.gather(*(run_lane(lane) for lane in lanes.values()))

    # -- one message ---------------------------------------------------------------------
    async def handle(self, message: Msg, *, replayed: bool = False) -> None:
        headers = message.headers or {}
        subject = headers.get(deadletter.SUBJECT, message.subject) if replayed else message.subject
        delivered, stream_sequence = pull.delivery(message)
        deliveries = delivered or 1
        parent = propagate.extract(headers)
        attributes: dict[str, Any] = {
            "messaging.system": "nats",
            "messaging.operation.type": "process",
            "messaging.destination.name": subject,
            "messaging.consumer.group.name": self.spec.durable,
        }
        if deliveries > 1:
            attributes["messaging.nats.delivery_count"] = deliveries
        try:
            envelope = decode(
                subject,
                headers,
                message.data,
                self._known,
                stream_sequence=None if replayed else stream_sequence,
            )
        except InvalidEvent as error:
            with _tracer.start_as_current_span(
                "process invalid", context=parent, kind=SpanKind.CONSUMER, attributes=attributes
            ) as span:
                span.set_status(Status(StatusCode.ERROR, error.reason))
                await self._dead_letter(message, subject, dict(headers), error.reason, deliveries)
            return
        type_name = envelope.type
        handler = self._handlers.get(type_name)
        if handler is None:
            # Matched the filter but this consumer has nothing to do with it.
            await message.ack()
            return
        if deliveries > self.spec.max_deliver:
            # Every earlier delivery ended without a word from us: the process died or hung in
            # the handler each time (a message that crashes the interpreter). The server
            # delivers once more than our bound so that it lands here, not nowhere.
            reason = (
                f"handler never finished in {deliveries - 1} deliveries "
                "(the instance died or stalled while handling it each time)"
            )
            log.error("consumer.gave_up", consumer=self.spec.durable, reason=reason)
            await self._dead_letter(message, subject, dict(headers), reason, deliveries)
            return
        attributes["messaging.message.id"] = envelope.id
        attributes["mutualis.tenant"] = envelope.tenant
        metric_attributes = self._attributes_for(type_name)
        span = _tracer.start_span(
            self._span_names.get(type_name) or self._span_name(type_name),
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes=attributes,
        )
        # What `start_as_current_span` does, without its two generator-based context managers
        # (3 µs an event); exceptions are recorded below, where they are sorted.
        current = otel_context.attach(trace.set_span_in_context(span))
        try:
            with handling_event(envelope.tenant, envelope.id, type_name):
                started = time.perf_counter()
                self._in_hand.took(message)
                try:
                    await handler(envelope)
                except Unprocessable as error:
                    span.set_status(Status(StatusCode.ERROR, error.reason))
                    await self._dead_letter(
                        message, subject, dict(headers), error.reason, deliveries
                    )
                    return
                except Exception as error:  # noqa: BLE001 - any handler bug must not stop us
                    # Event-handler errors never kill the consumer: retry later, then give up.
                    span.record_exception(error)
                    span.set_status(Status(StatusCode.ERROR, type(error).__name__))
                    await self._failed(message, subject, dict(headers), error, deliveries)
                    return
                finally:
                    self._in_hand.done(message)
                    _handler_duration.record(time.perf_counter() - started, metric_attributes)
                await message.ack()
        finally:
            otel_context.detach(current)
            span.end()
        _consumed.add(1, metric_attributes)

    def _attributes_for(self, type_name: str) -> dict[str, str]:
        attributes = self._per_type_attributes.get(type_name)
        if attributes is None:
            attributes = {**self._metric_attributes, "event.type": type_name}
            self._per_type_attributes[type_name] = attributes
        return attributes

    def _span_name(self, type_name: str) -> str:
        # "process parapheur.folder.submitted": the event type is the destination template.
        name = f"process {type_name.removeprefix('mutualis.').rsplit('.v', 1)[0]}"
        self._span_names[type_name] = name
        return name

    async def _failed(
        self,
        message: Msg,
        subject: str,
        headers: dict[str, str],
        error: Exception,
        deliveries: int,
    ) -> None:
        reason = f"handler failed {deliveries} times: {type(error).__name__}: {error}"
        if deliveries >= self.spec.max_deliver:
            log.error("consumer.gave_up", consumer=self.spec.durable, reason=reason)
            await self._dead_letter(message, subject, headers, reason, deliveries)
            return
        chosen = error.delay_s if isinstance(error, RetryAfter) else None
        delay = max(chosen, 0.0) if chosen is not None else self.spec.delay_after(deliveries)
        log.warning(
            "consumer.retry_later",
            consumer=self.spec.durable,
            error=repr(error),
            deliveries=deliveries,
            delay_s=delay,
        )
        _redelivered.add(1, {"messaging.consumer.group.name": self.spec.durable})
        await message.nak(delay=delay)

    async def _dead_letter(
        self,
        message: Msg,
        subject: str,
        headers: dict[str, str],
        reason: str,
        deliveries: int,
    ) -> None:
        metadata = message.metadata
        stream_seq = metadata.sequence.stream if metadata.sequence else 0
        letter = deadletter.carried_headers(headers)
        letter.update(
            {
                deadletter.REASON: deadletter.header_safe(reason),
                deadletter.CONSUMER: self.spec.durable,
                deadletter.STREAM: metadata.stream or self.spec.stream,
                deadletter.SEQUENCE: str(stream_seq),
                deadletter.SUBJECT: subject,
                deadletter.DELIVERIES: str(deliveries),
                deadletter.TIME: datetime.now(UTC).isoformat(),
                # The same message dead-lettered twice (a crash between the two steps below)
                # is stored once.
                "Nats-Msg-Id": (
                    f"dlq:{metadata.stream}:{stream_seq}:{self.spec.durable}:{deliveries}"
                ),
            }
        )
        await publish_raw(
            self._js, deadletter.dead_letter_subject(self.spec.durable), message.data, letter
        )
        await message.term()
        _dead_lettered.add(1, {"messaging.consumer.group.name": self.spec.durable})
        log.error(
            "consumer.dead_lettered",
            consumer=self.spec.durable,
            subject=subject,
            stream_sequence=stream_seq,
            reason=reason,
        )
