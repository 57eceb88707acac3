"""Publishing events: idempotent, traced, and patient through a JetStream leader election.

Every publish carries `Nats-Msg-Id` = the event id, so a retry after a lost ack is stored
once. Retries run with tenacity until `deadline_s` (default 15 s: a crash failover takes
4.5-7 s here); past it the caller gets `PublishTimeout`, never an unbounded wait.

`append` adds optimistic concurrency on one aggregate: JetStream checks the last sequence on
the aggregate's subject filter (`Nats-Expected-Last-Subject-Sequence` with
`...-Subject`). The server checks that before de-duplication, so when a retried append
meets a "wrong last sequence" we look whether our own message is the one that got there.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, TypeVar

import nats.errors
from nats.js import JetStreamContext
from nats.js.api import PubAck
from nats.js.errors import (
    APIError,
    BadRequestError,
    NoStreamResponseError,
    NotFoundError,
    ServiceUnavailableError,
)
from opentelemetry import metrics, propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    RetryError,
    retry_if_exception,
    stop_after_delay,
    wait_random_exponential,
)

from mutualis_kernel.bus.errors import ConcurrencyConflict, PublishTimeout
from mutualis_kernel.bus.leaders import (
    UNANSWERED_S,
    LeaderNews,
    news_spread,
    waiting_retries,
)
from mutualis_kernel.events.envelope import MSG_ID_HEADER, Envelope, encode
from mutualis_kernel.events.registry import Event
from mutualis_kernel.tenants import TenantDirectory, UnknownTenant, default_tenants

#: "wrong last sequence": 10071 when checked against the stored stream, 10164 when a
#: clustered leader refuses a proposal racing another one for the same subject.
WRONG_LAST_SEQUENCE = frozenset({10071, 10164})
#: "duplicate message id is in process": an earlier attempt with the same `Nats-Msg-Id` is
#: still being proposed (its answer was lost, typically while the leader has no quorum). Its
#: outcome is unknown yet; asking again later gets either the duplicate ack or a clean retry.
MESSAGE_ID_IN_PROCESS = 10158

_tracer = trace.get_tracer("mutualis_kernel")
_meter = metrics.get_meter("mutualis_kernel")
_published = _meter.create_counter(
    "mutualis.events.published", unit="{event}", description="Events stored by JetStream"
)
_publish_retries = _meter.create_counter(
    "mutualis.events.publish_retries", unit="{attempt}", description="Publish attempts retried"
)


def is_transient(error: BaseException) -> bool:
    """Errors a leader election or a reconnect produces, which a retry will outlive."""
    if isinstance(error, (NoStreamResponseError, ServiceUnavailableError)):
        return True
    if isinstance(error, (nats.errors.NoRespondersError, nats.errors.TimeoutError)):
        return True
    if isinstance(error, (asyncio.TimeoutError, nats.errors.ConnectionReconnectingError)):
        return True
    # Some nats-py errors (KeyNotFoundError…) never set `code`: read it with care.
    if not isinstance(error, APIError):
        return False
    if getattr(error, "err_code", None) == MESSAGE_ID_IN_PROCESS:
        return True
    code = getattr(error, "code", None)
    return isinstance(code, int) and code >= 500


T = TypeVar("T")

_backoff = wait_random_exponential(multiplier=0.05, max=0.5)


def _retry_wait(state: RetryCallState) -> float:
    """Exponential backoff with jitter; almost none after news (`LeaderNews`)."""
    error = state.outcome.exception() if state.outcome is not None else None
    if isinstance(error, LeaderNews):
        return news_spread()
    return _backoff(state)


#: The first attempt of an idempotent call that retries: a request that went to a stream
#: leader that just died or stepped down is never answered, and waiting out nats-py's 5 s for
#: it added seconds to the election (the drills measured 11 s stalls for a 6 s election). Past
#: this, the attempt is dropped and sent again. It is also what each request lost with a
#: leader that handed over costs a client in a graceful rolling restart, and one user action
#: makes several requests in turn (a signature: document, event, projection), so it is a
#: quarter of the 1 s issue 8 allows: at 0.5 s two losses in one action passed it. A healthy
#: cluster answers in milliseconds, a loaded one here in tens of them; a slower answer only
#: costs a resend, as every call given this limit may safely run twice.
PATIENT_ATTEMPT_S = 0.25
#: Each later attempt gets twice the time of the one before, up to this: a lost request is
#: resent at once, while a cluster that is only slow (a starved CPU) gets more patience each
#: time instead of a storm of resends.
PATIENT_ATTEMPT_MAX_S = 2.0


def attempt_limit(attempt: int, first_s: float = PATIENT_ATTEMPT_S) -> float:
    """How long attempt number `attempt` (from 1) may wait for its answer."""
    return min(first_s * 2.0 ** (attempt - 1), max(first_s, PATIENT_ATTEMPT_MAX_S))


async def with_retries(
    operation: Callable[[], Awaitable[T]],
    deadline_s: float,
    what: str,
    *,
    attempt_timeout_s: float | None = None,
    cut_short_on_news: bool = True,
) -> T:
    """Run `operation` again on transient errors until it succeeds or `deadline_s` passes.

    With `attempt_timeout_s`, a first attempt not answered by then counts as a transient
    failure, and each later one may wait twice as long as the one before (`attempt_limit`);
    only for operations that may safely run twice (reads, puts of the same bytes, writes that
    recognise their own earlier landing). News of an elected leader ends a pause between two
    attempts and, unless `cut_short_on_news` is off, cuts short a later attempt left
    unanswered (`bus.leaders`).
    """
    if attempt_timeout_s is not None:
        bare, first, attempts = operation, attempt_timeout_s, 0

        async def operation() -> T:
            nonlocal attempts
            attempts += 1
            # asyncio.timeout rather than wait_for: a timer on this task, not a task of its own
            # per call (every KV read and write of every service comes through here).
            async with asyncio.timeout(attempt_limit(attempts, first)):
                return await bare()

    loop = asyncio.get_running_loop()
    started = loop.time()
    # The first attempt runs bare: almost every call succeeds at once, and setting up the
    # retry machinery per call cost a few percent of a request's CPU (bench/identity).
    try:
        return await operation()
    except Exception as error:  # sorted just below: anything not transient is re-raised
        if not is_transient(error):
            raise
        first_error = error

    def timed_out(cause: BaseException | None) -> PublishTimeout:
        return PublishTimeout(f"{what} not stored within {deadline_s}s (last error: {cause!r})")

    remaining = deadline_s - (loop.time() - started)
    if remaining <= 0:
        raise timed_out(first_error) from first_error
    # Pauses and attempts from here on end early when a leader is elected or the connection
    # comes back (bus.leaders): the retry asks again then, not up to 2 s later.
    await waiting_retries.pause(random.uniform(0, min(0.1, remaining)))  # noqa: S311 - jitter
    try:
        async for attempt in AsyncRetrying(
            stop=stop_after_delay(max(0.0, deadline_s - (loop.time() - started))),
            wait=_retry_wait,
            retry=retry_if_exception(is_transient),
            reraise=False,
            sleep=waiting_retries.pause,
        ):
            with attempt:
                cut_short = waiting_retries.attempt() if cut_short_on_news else nullcontext()
                async with cut_short:
                    return await operation()
    except RetryError as error:
        cause = error.last_attempt.exception()
        raise timed_out(cause) from cause
    raise AssertionError("unreachable")  # pragma: no cover


#: Attempts of one hedged call running at once, at most: a cluster that is only slow gets
#: a few more chances to answer, not a storm.
HEDGED_ATTEMPTS_MAX = 4


async def with_hedged_attempts(
    operation: Callable[[], Awaitable[T]],
    deadline_s: float,
    what: str,
    *,
    discard: Callable[[T], Awaitable[None]],
) -> T:
    """`with_retries` for an operation whose attempts are independent of each other (each
    makes a thing of its own, such as a consumer under a new name).

    An attempt not answered within its `attempt_limit` is left running while the next one
    starts: a lost request (its server died) costs only the limit, and a slow answer still
    counts instead of being thrown away and asked again just as slowly. The first success is
    returned; attempts still running are cancelled, and any other success is handed to
    `discard`.
    """
    loop = asyncio.get_running_loop()
    give_up_at = loop.time() + deadline_s
    running: set[asyncio.Future[T]] = set()
    attempts = failures = 0
    last_started = loop.time()
    last_error: BaseException | None = None
    try:
        while True:
            remaining = give_up_at - loop.time()
            if remaining <= 0:
                raise PublishTimeout(
                    f"{what} not done within {deadline_s}s (last error: {last_error!r})"
                )
            # News (a leader elected, the connection back) starts the next attempt at once,
            # unless the last one is too young to have been lost.
            if len(running) < HEDGED_ATTEMPTS_MAX and (
                not running or loop.time() - last_started >= UNANSWERED_S
            ):
                attempts += 1
                last_started = loop.time()
                running.add(asyncio.ensure_future(operation()))
            news = waiting_retries.next_news()
            limit_left = last_started + attempt_limit(attempts) - loop.time()
            waited: set[asyncio.Future[Any]] = {*running, news}
            try:
                finished, _ = await asyncio.wait(
                    waited,
                    timeout=min(max(0.0, limit_left), remaining),
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                news.cancel()
            done = [future for future in running if future in finished]
            winner: asyncio.Future[T] | None = None
            for future in done:
                running.discard(future)
                error = future.exception()
                if error is None:
                    if winner is None:
                        winner = future
                    else:
                        await discard(future.result())
                elif not is_transient(error):
                    raise error
                else:
                    last_error = error
                    failures += 1
            if winner is not None:
                return winner.result()
            if done and not running:
                # Refused outright (no responders during an election): pause before asking
                # again, as `with_retries` does.
                pause = random.uniform(0, min(0.05 * 2**failures, 0.5))  # noqa: S311 - jitter
                await waiting_retries.pause(min(pause, max(0.0, give_up_at - loop.time())))
    finally:
        for future in running:
            future.cancel()
        for outcome in await asyncio.gather(*running, return_exceptions=True):
            if not isinstance(outcome, BaseException):
                await discard(outcome)  # answered as it was being cancelled


async def with_attempt_limits(
    operation: Callable[[float], Awaitable[T]],
    deadline_s: float,
    what: str,
    *,
    max_s: float = PATIENT_ATTEMPT_MAX_S,
) -> T:
    """`with_retries` for a call that takes its own time limit: attempt n is given
    `attempt_limit(n)` (at most `max_s`) to pass on (a nats-py `timeout=`, `put_object`'s
    `timeout_s`). Only for operations that may safely run twice.

    Such an attempt is often a whole object put, making progress for seconds: news of an
    election elsewhere does not cut it short (it would start the file again); its own limit
    notices a lost ack, and only its pauses end on news."""
    attempts = 0

    async def attempt() -> T:
        nonlocal attempts
        attempts += 1
        return await operation(min(attempt_limit(attempts), max_s))

    return await with_retries(attempt, deadline_s, what, cut_short_on_news=False)


async def publish_raw(
    js: JetStreamContext,
    subject: str,
    body: bytes,
    headers: dict[str, str],
    *,
    deadline_s: float = 15.0,
    attempt_timeout_s: float = 2.0,
) -> PubAck:
    """Publish a message that is not an event of ours (dead letters, replays), with retries."""

    async def attempt(limit_s: float) -> PubAck:
        return await js.publish(subject, body, timeout=limit_s, headers=headers)

    return await with_attempt_limits(
        attempt, deadline_s, f"message on {subject}", max_s=attempt_timeout_s
    )


@dataclass(frozen=True)
class Stored:
    """Where JetStream put an event; `duplicate` when it had it already."""

    stream: str
    sequence: int
    duplicate: bool
    envelope: Envelope[Event]


def _send_attributes(
    envelope: Envelope[Event], subject: str, size: int
) -> dict[str, str | int | bool]:
    """OpenTelemetry messaging attributes of a PRODUCER span."""
    attributes: dict[str, str | int | bool] = {
        "messaging.system": "nats",
        "messaging.operation.name": "send",
        "messaging.operation.type": "send",
        "messaging.destination.name": subject,
        "messaging.message.id": envelope.id,
        "messaging.message.body.size": size,
        "cloudevents.event_type": envelope.type,
        "mutualis.tenant": envelope.tenant,
    }
    if envelope.datacenter:
        attributes["mutualis.datacenter"] = envelope.datacenter
    return attributes


def _batch_span_name(chunk: Sequence[Envelope[Event]]) -> str:
    """`send demo.parcel.registered` when the window holds one event type, else `send demo`."""
    first = chunk[0].data
    if len({e.type for e in chunk}) == 1:
        return f"send {first.service}.{first.event_name}"
    return f"send {first.service}"


def _batch_attributes(chunk: Sequence[Envelope[Event]]) -> dict[str, str | int | bool]:
    """Messaging attributes of a window's PRODUCER span; the tenant only when it is one."""
    attributes: dict[str, str | int | bool] = {
        "messaging.system": "nats",
        "messaging.operation.name": "send",
        "messaging.operation.type": "send",
        "messaging.batch.message_count": len(chunk),
    }
    types = {e.type for e in chunk}
    if len(types) == 1:
        attributes["cloudevents.event_type"] = types.pop()
    tenants = {e.tenant for e in chunk}
    if len(tenants) == 1:
        attributes["mutualis.tenant"] = tenants.pop()
    datacenter = chunk[0].datacenter
    if datacenter:
        attributes["mutualis.datacenter"] = datacenter
    return attributes


def stream_of(service: str) -> str:
    return f"{service.upper()}_EVENTS"


class EventPublisher:
    def __init__(
        self,
        js: JetStreamContext,
        *,
        source_service: str,
        datacenter: str | None = None,
        deadline_s: float = 15.0,
        attempt_timeout_s: float = 2.0,
        tenants: TenantDirectory | None = None,
    ) -> None:
        self._js = js
        self.source = f"/mutualis/{source_service}"
        self.datacenter = datacenter
        self.deadline_s = deadline_s
        self.attempt_timeout_s = attempt_timeout_s
        self.tenants = tenants or default_tenants()

    def envelope(
        self,
        event: Event,
        *,
        tenant: str,
        aggregate_id: str,
        cause: Envelope[Event] | None = None,
        event_id: str | None = None,
        correlation_id: str | None = None,
    ) -> Envelope[Event]:
        """Wrap an event; a `cause` passes on its correlation id and becomes the causation."""
        if tenant not in self.tenants:
            raise UnknownTenant(tenant)
        extra: dict[str, str] = {}
        if event_id is not None:
            extra["id"] = event_id
        return Envelope(
            data=event,
            tenant=tenant,
            aggregate_id=aggregate_id,
            source=self.source,
            correlation_id=correlation_id or (cause.correlation_id or cause.id if cause else None),
            causation_id=cause.id if cause else None,
            datacenter=self.datacenter,
            **extra,  # type: ignore[arg-type]
        )

    async def publish(
        self,
        event: Event,
        *,
        tenant: str,
        aggregate_id: str,
        cause: Envelope[Event] | None = None,
        event_id: str | None = None,
        correlation_id: str | None = None,
        expected_version: int | None = None,
    ) -> Stored:
        """Wrap and store an event; with `expected_version`, only if the aggregate is still
        at that version (see `append`)."""
        envelope = self.envelope(
            event,
            tenant=tenant,
            aggregate_id=aggregate_id,
            cause=cause,
            event_id=event_id,
            correlation_id=correlation_id,
        )
        return await self.publish_envelope(envelope, expected_version=expected_version)

    async def append(
        self,
        event: Event,
        *,
        tenant: str,
        aggregate_id: str,
        expected_version: int,
        cause: Envelope[Event] | None = None,
        event_id: str | None = None,
        correlation_id: str | None = None,
    ) -> Stored:
        """Publish only if the aggregate is still at `expected_version` (0 for a new one)."""
        return await self.publish(
            event,
            tenant=tenant,
            aggregate_id=aggregate_id,
            cause=cause,
            event_id=event_id,
            correlation_id=correlation_id,
            expected_version=expected_version,
        )

    async def publish_envelope(
        self, envelope: Envelope[Event], *, expected_version: int | None = None
    ) -> Stored:
        subject, headers, body = encode(envelope)
        aggregate_filter = envelope.subject.aggregate_filter
        if expected_version is not None:
            headers["Nats-Expected-Last-Subject-Sequence"] = str(expected_version)
            headers["Nats-Expected-Last-Subject-Sequence-Subject"] = aggregate_filter
        attributes = _send_attributes(envelope, subject, len(body))
        span_name = f"send {envelope.data.service}.{envelope.data.event_name}"
        with _tracer.start_as_current_span(
            span_name, kind=SpanKind.PRODUCER, attributes=attributes
        ) as span:
            propagate.inject(headers)
            try:
                stored = await self._publish_with_retries(
                    subject, headers, body, envelope, expected_version, aggregate_filter
                )
            except ConcurrencyConflict as error:
                span.set_status(Status(StatusCode.ERROR, "concurrency conflict"))
                span.set_attribute("error.type", type(error).__name__)
                raise
            span.set_attribute("messaging.nats.stream.sequence", stored.sequence)
            if stored.duplicate:
                span.set_attribute("mutualis.duplicate", True)
        _published.add(1, {"event.type": envelope.type, "mutualis.tenant": envelope.tenant})
        return stored

    async def publish_batch(
        self, envelopes: Sequence[Envelope[Event]], *, window: int = 256
    ) -> list[Stored]:
        """Pipelined publishing for bulk producers (imports, load, replays of history).

        Up to `window` publishes are in flight at once; one that fails or gets no ack in time
        is published again through `publish_envelope`, with its retries. Order of storage
        across the window is not guaranteed, so this is not for appends to one aggregate.

        Traced as the OpenTelemetry messaging conventions describe batch sending: one PRODUCER
        `send` span per window (`messaging.batch.message_count`), whose context every message
        of the window carries, so each consumer's span is its child. A span per message cost
        about 40 µs each, as much as the publish itself (bench/README.md).
        """
        stored: list[Stored] = []
        published: Counter[tuple[str, str]] = Counter()
        for start in range(0, len(envelopes), window):
            chunk = envelopes[start : start + window]
            with _tracer.start_as_current_span(
                _batch_span_name(chunk), kind=SpanKind.PRODUCER, attributes=_batch_attributes(chunk)
            ):
                carrier: dict[str, str] = {}
                propagate.inject(carrier)
                pending = []
                for envelope in chunk:
                    subject, headers, body = encode(envelope)
                    headers.update(carrier)
                    pending.append(await self._js.publish_async(subject, body, headers=headers))
                # One deadline for the whole window: publish_async futures never time out alone.
                await asyncio.wait(pending, timeout=self.attempt_timeout_s)
                try:
                    for envelope, future in zip(chunk, pending, strict=True):
                        error = future.exception() if future.done() else TimeoutError()
                        if error is not None:
                            future.cancel()
                            if not is_transient(error):
                                raise error
                            stored.append(await self.publish_envelope(envelope))
                            continue
                        ack = future.result()
                        stored.append(Stored(ack.stream, ack.seq, bool(ack.duplicate), envelope))
                        published[envelope.type, envelope.tenant] += 1
                finally:
                    # Counted once per kind and window, not per event (an add is a lock and
                    # a lookup by attributes in the SDK).
                    for (type_name, tenant), count in published.items():
                        _published.add(count, {"event.type": type_name, "mutualis.tenant": tenant})
                    published.clear()
        return stored

    async def _publish_with_retries(
        self,
        subject: str,
        headers: dict[str, str],
        body: bytes,
        envelope: Envelope[Event],
        expected_version: int | None,
        aggregate_filter: str,
    ) -> Stored:
        attempts = 0

        async def attempt() -> Stored:
            nonlocal attempts
            attempts += 1
            if attempts > 1:
                _publish_retries.add(1, {"event.type": envelope.type})
            # Resending is safe (the message id deduplicates it; an append meets its own
            # landing below), so a publish lost with a leader that stepped down is resent
            # after PATIENT_ATTEMPT_S rather than after the whole attempt timeout.
            limit = min(attempt_limit(attempts), self.attempt_timeout_s)
            try:
                ack = await self._js.publish(subject, body, timeout=limit, headers=headers)
            except BadRequestError as error:
                if error.err_code not in WRONG_LAST_SEQUENCE:
                    raise
                assert expected_version is not None
                if attempts > 1:
                    stored = await self._find_own_append(
                        envelope, aggregate_filter, expected_version
                    )
                    if stored is not None:
                        return stored
                raise ConcurrencyConflict(
                    aggregate_filter, expected_version, error.description or ""
                ) from None
            return Stored(ack.stream, ack.seq, bool(ack.duplicate), envelope)

        return await with_retries(attempt, self.deadline_s, f"event {envelope.id}")

    async def _find_own_append(
        self, envelope: Envelope[Event], aggregate_filter: str, expected_version: int
    ) -> Stored | None:
        """Our append may have landed on an earlier attempt whose ack was lost."""
        stream = stream_of(envelope.data.service)
        try:
            message = await self._js.get_msg(
                stream, seq=expected_version + 1, subject=aggregate_filter, next=True
            )
        except NotFoundError:
            return None
        if (message.headers or {}).get(MSG_ID_HEADER) == envelope.id and message.seq:
            return Stored(stream, message.seq, True, envelope)
        return None
