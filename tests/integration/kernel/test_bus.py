"""The event bus against a real three-datacenter cluster: what every service relies on."""

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import pytest
from nats.js.api import RawStreamMsg
from nats.js.errors import NotFoundError
from opentelemetry.trace import SpanKind

from mutualis_kernel.bus import deadletter
from mutualis_kernel.bus.consumer import EventConsumer, release_unhandled
from mutualis_kernel.bus.errors import ConcurrencyConflict, RetryAfter, Unprocessable
from mutualis_kernel.bus.spec import ConsumerSpec
from mutualis_kernel.events import Envelope, SubjectFilter, derived_event_id
from mutualis_kernel.streams import DEAD_LETTER_STREAM
from mutualis_kernel.testing import SpanCapture
from mutualis_kernel.testing.demo_events import (
    LabelPrinted,
    ParcelRegistered,
    ParcelShipped,
    demo_catalog,
)

from .conftest import Bus


def new_id() -> str:
    return uuid.uuid4().hex


def spec_for(name: str, *, max_deliver: int = 3) -> ConsumerSpec:
    return ConsumerSpec(
        durable=f"test-{name}-{new_id()[:8]}",
        stream="DEMO_EVENTS",
        filter_subjects=(SubjectFilter.event("demo", "parcel.registered"),),
        service="demo",
        description="kernel test consumer",
        max_deliver=max_deliver,
        backoff_s=(0.05,),
    )


async def run_consumer(
    bus: Bus, spec: ConsumerSpec, handler: Callable[[Envelope[Any]], Awaitable[None]]
) -> tuple[asyncio.Event, asyncio.Task[None]]:
    consumer = EventConsumer(bus.js, spec, {ParcelRegistered: handler}, known=demo_catalog)
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    await asyncio.wait_for(consumer.ready.wait(), 10)
    return stop, task


async def wait_for(predicate: Callable[[], Awaitable[bool]], timeout: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def dead_letter_of(bus: Bus, spec: ConsumerSpec, event_id: str) -> RawStreamMsg:
    """Wait for the dead letter of one event, among whatever else this consumer rejected."""
    subject = deadletter.dead_letter_subject(spec.durable)
    deadline = asyncio.get_running_loop().time() + 15
    while asyncio.get_running_loop().time() < deadline:
        seq = 1
        while True:
            try:
                letter = await bus.js.get_msg(
                    DEAD_LETTER_STREAM, seq=seq, subject=subject, next=True
                )
            except NotFoundError:
                break
            if (letter.headers or {}).get("ce-id") == event_id:
                return letter
            seq = (letter.seq or seq) + 1
        await asyncio.sleep(0.05)
    raise AssertionError(f"no dead letter for {event_id}")


async def count(bus: Bus, subject_filter: str) -> int:
    info = await bus.js.stream_info("DEMO_EVENTS", subjects_filter=subject_filter)
    return sum((info.state.subjects or {}).values())


async def test_a_published_event_comes_back_validated_with_its_context(bus: Bus) -> None:
    parcel = new_id()
    received: list[Envelope[Any]] = []

    async def handler(envelope: Envelope[Any]) -> None:
        if envelope.aggregate_id == parcel:
            received.append(envelope)

    stop, task = await run_consumer(bus, spec_for("roundtrip"), handler)
    stored = await bus.publisher.publish(
        ParcelRegistered(reference="R-1", weight_kg=2.5),
        tenant="bordeaux",
        aggregate_id=parcel,
        correlation_id="journey-1",
    )
    await wait_for(lambda: _true(bool(received)))
    stop.set()
    await task

    envelope = received[0]
    assert envelope.id == stored.envelope.id
    assert envelope.data == ParcelRegistered(reference="R-1", weight_kg=2.5)
    assert envelope.tenant == "bordeaux"
    assert envelope.correlation_id == "journey-1"
    assert envelope.datacenter == "dc1"
    assert envelope.type == "mutualis.demo.parcel.registered.v1"


async def test_publishing_the_same_event_twice_stores_it_once(bus: Bus) -> None:
    parcel = new_id()
    envelope = bus.publisher.envelope(
        ParcelRegistered(reference="R-2", weight_kg=1), tenant="pessac", aggregate_id=parcel
    )
    first = await bus.publisher.publish_envelope(envelope)
    second = await bus.publisher.publish_envelope(envelope)

    assert not first.duplicate
    assert second.duplicate
    assert second.sequence == first.sequence
    assert await count(bus, SubjectFilter.aggregate("demo", "pessac", "parcel", parcel)) == 1


async def test_an_unknown_tenant_is_refused_before_anything_is_sent(bus: Bus) -> None:
    from mutualis_kernel.tenants import UnknownTenant

    with pytest.raises(UnknownTenant):
        await bus.publisher.publish(
            ParcelRegistered(reference="R", weight_kg=1), tenant="atlantis", aggregate_id=new_id()
        )


async def test_a_poison_message_is_dead_lettered_with_its_reason_and_the_consumer_goes_on(
    bus: Bus,
) -> None:
    spec = spec_for("poison")
    handled: list[str] = []

    async def handler(envelope: Envelope[Any]) -> None:
        handled.append(envelope.aggregate_id)

    stop, task = await run_consumer(bus, spec, handler)
    poison_id = new_id()
    subject = f"evt.demo.bordeaux.parcel.{poison_id}.parcel.registered"
    await bus.js.publish(
        subject,
        b'{"reference": 42}',
        headers={
            "ce-specversion": "1.0",
            "ce-id": poison_id,
            "ce-source": "/elsewhere",
            "ce-type": "mutualis.demo.parcel.registered.v1",
            "ce-tenant": "bordeaux",
            "ce-time": "2026-11-29T10:00:00+00:00",
            "Nats-Msg-Id": poison_id,
        },
    )
    healthy = new_id()
    await bus.publisher.publish(
        ParcelRegistered(reference="ok", weight_kg=1), tenant="bordeaux", aggregate_id=healthy
    )
    await wait_for(lambda: _true(healthy in handled))

    letter = await dead_letter_of(bus, spec, poison_id)
    stop.set()
    await task
    headers = letter.headers or {}
    assert "payload invalid" in headers[deadletter.REASON]
    assert "weight_kg" in headers[deadletter.REASON]
    assert headers[deadletter.SUBJECT] == subject
    assert headers["ce-id"] == poison_id
    assert letter.data == b'{"reference": 42}'
    assert poison_id not in handled


async def test_a_tenant_that_does_not_match_its_subject_is_dead_lettered(bus: Bus) -> None:
    spec = spec_for("tenantmismatch")
    stop, task = await run_consumer(bus, spec, _ignore)
    envelope = bus.publisher.envelope(
        ParcelRegistered(reference="x", weight_kg=1), tenant="talence", aggregate_id=new_id()
    )
    from mutualis_kernel.events import encode

    subject, headers, body = encode(envelope)
    await bus.js.publish(subject.replace(".talence.", ".bordeaux."), body, headers=headers)

    letter = await dead_letter_of(bus, spec, envelope.id)
    stop.set()
    await task
    assert "does not match subject tenant" in (letter.headers or {})[deadletter.REASON]


async def test_a_handler_that_crashes_once_is_retried_and_has_exactly_one_effect(bus: Bus) -> None:
    parcel = new_id()
    attempts: list[int] = []

    async def print_label(envelope: Envelope[Any]) -> None:
        if envelope.aggregate_id != parcel:
            return
        # The effect is an event whose id derives from the cause: a second run re-publishes
        # the same id, which JetStream drops as a duplicate.
        await bus.publisher.publish(
            LabelPrinted(parcel_id=envelope.aggregate_id),
            tenant=envelope.tenant,
            aggregate_id=envelope.aggregate_id,
            cause=envelope,
            event_id=derived_event_id(envelope.id, "label"),
        )
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("crashed after the effect, before the ack")

    stop, task = await run_consumer(bus, spec_for("crash", max_deliver=5), print_label)
    await bus.publisher.publish(
        ParcelRegistered(reference="c", weight_kg=1), tenant="merignac", aggregate_id=parcel
    )
    await wait_for(lambda: _true(len(attempts) >= 2))
    stop.set()
    await task

    labels = SubjectFilter.aggregate("demo", "merignac", "label", parcel)
    assert await count(bus, labels) == 1


async def test_a_handler_that_knows_when_to_look_again_is_redelivered_then_not_the_backoff(
    bus: Bus,
) -> None:
    # A rate limit or another instance's lease: the handler says when (RetryAfter); the
    # spec's backoff (a minute here) would hold the message far longer.
    spec = replace(spec_for("retryafter", max_deliver=5), backoff_s=(60.0,))
    parcel = new_id()
    attempts: list[int] = []

    async def paced(envelope: Envelope[Any]) -> None:
        if envelope.aggregate_id != parcel:
            return
        attempts.append(1)
        if len(attempts) == 1:
            raise RetryAfter("over the tenant's rate", delay_s=0.1)

    stop, task = await run_consumer(bus, spec, paced)
    await bus.publisher.publish(
        ParcelRegistered(reference="r", weight_kg=1), tenant="merignac", aggregate_id=parcel
    )
    await wait_for(lambda: _true(len(attempts) >= 2))
    stop.set()
    await task
    assert len(attempts) == 2


async def test_a_message_the_instance_dies_on_each_time_is_dead_lettered_not_lost(
    bus: Bus,
) -> None:
    # A message that kills the process handling it (a crash in native code, the OOM killer)
    # gets no NAK and no ack: without a word from the kernel the server would give up after
    # max_deliver and the message would land nowhere.
    spec = replace(spec_for("dies", max_deliver=2), ack_wait_s=1.0)
    parcel = new_id()
    entered = asyncio.Event()
    runs: list[int] = []

    async def dies_in_it(envelope: Envelope[Any]) -> None:
        if envelope.aggregate_id != parcel:
            return
        runs.append(1)
        entered.set()
        await asyncio.Event().wait()  # never returns: the instance dies in here

    stored = await bus.publisher.publish(
        ParcelRegistered(reference="d", weight_kg=1), tenant="pessac", aggregate_id=parcel
    )
    for _ in range(spec.max_deliver):
        entered.clear()
        _, task = await run_consumer(bus, spec, dies_in_it)
        await asyncio.wait_for(entered.wait(), 15)
        task.cancel()  # the process is gone: no ack, no NAK
        with contextlib.suppress(asyncio.CancelledError):
            await task
    stop, task = await run_consumer(bus, spec, dies_in_it)
    letter = await dead_letter_of(bus, spec, stored.envelope.id)
    stop.set()
    await task
    assert len(runs) == spec.max_deliver  # the last delivery was not run again
    assert "never finished" in (letter.headers or {})[deadletter.REASON]


async def test_a_handler_that_keeps_failing_is_dead_lettered_after_max_deliver(bus: Bus) -> None:
    spec = spec_for("givesup", max_deliver=3)
    attempts: list[int] = []

    async def always_fails(envelope: Envelope[Any]) -> None:
        if envelope.tenant == "bruges":
            attempts.append(1)
        raise ValueError("the archive is on fire")

    stop, task = await run_consumer(bus, spec, always_fails)
    parcel = new_id()
    stored = await bus.publisher.publish(
        ParcelRegistered(reference="f", weight_kg=1), tenant="bruges", aggregate_id=parcel
    )

    letter = await dead_letter_of(bus, spec, stored.envelope.id)
    stop.set()
    await task
    assert len(attempts) == 3
    headers = letter.headers or {}
    assert "the archive is on fire" in headers[deadletter.REASON]
    assert headers[deadletter.DELIVERIES] == "3"


async def test_unprocessable_goes_straight_to_the_dead_letters(bus: Bus) -> None:
    spec = spec_for("unprocessable", max_deliver=5)
    attempts: list[int] = []

    async def refuses(envelope: Envelope[Any]) -> None:
        if envelope.tenant == "floirac":
            attempts.append(1)
            raise Unprocessable("parcel for a commune we do not serve")

    stop, task = await run_consumer(bus, spec, refuses)
    stored = await bus.publisher.publish(
        ParcelRegistered(reference="u", weight_kg=1), tenant="floirac", aggregate_id=new_id()
    )

    letter = await dead_letter_of(bus, spec, stored.envelope.id)
    assert "do not serve" in (letter.headers or {})[deadletter.REASON]
    stop.set()
    await task
    assert len(attempts) == 1


async def test_a_replayed_dead_letter_reaches_only_its_consumer(bus: Bus) -> None:
    spec = spec_for("replay", max_deliver=1)
    fixed = asyncio.Event()
    handled: list[str] = []

    async def handler(envelope: Envelope[Any]) -> None:
        if not fixed.is_set():
            raise ValueError("bug")
        handled.append(envelope.id)

    stop, task = await run_consumer(bus, spec, handler)
    stored = await bus.publisher.publish(
        ParcelRegistered(reference="r", weight_kg=1), tenant="bordeaux", aggregate_id=new_id()
    )
    letter = await dead_letter_of(bus, spec, stored.envelope.id)
    fixed.set()
    headers = deadletter.carried_headers(letter.headers)
    headers[deadletter.REPLAY_OF] = str(letter.seq)
    headers["Nats-Msg-Id"] = f"replay:{letter.seq}"
    await bus.js.publish(
        deadletter.replay_subject(spec.durable), letter.data or b"", headers=headers
    )
    await wait_for(lambda: _true(stored.envelope.id in handled))
    stop.set()
    await task


async def test_two_concurrent_appends_to_one_aggregate_one_wins_the_other_conflicts(
    bus: Bus,
) -> None:
    parcel = new_id()
    await bus.publisher.append(
        ParcelRegistered(reference="p", weight_kg=1),
        tenant="talence",
        aggregate_id=parcel,
        expected_version=0,
    )
    history = await bus.store.load("demo", "talence", "parcel", parcel)

    results = await asyncio.gather(
        *(
            bus.publisher.append(
                ParcelShipped(carrier=carrier),
                tenant="talence",
                aggregate_id=parcel,
                expected_version=history.version,
            )
            for carrier in ("La Poste", "Chronopost")
        ),
        return_exceptions=True,
    )

    conflicts = [r for r in results if isinstance(r, ConcurrencyConflict)]
    assert len(conflicts) == 1
    after = await bus.store.load("demo", "talence", "parcel", parcel)
    assert [type(e.data) for e in after.events] == [ParcelRegistered, ParcelShipped]
    assert after.version > history.version


async def test_an_aggregate_is_read_back_in_order_without_its_neighbours(bus: Bus) -> None:
    parcel, neighbour = new_id(), new_id()
    await bus.publisher.append(
        ParcelRegistered(reference="a", weight_kg=1),
        tenant="begles",
        aggregate_id=parcel,
        expected_version=0,
    )
    await bus.publisher.publish(
        ParcelRegistered(reference="n", weight_kg=1), tenant="begles", aggregate_id=neighbour
    )
    version = (await bus.store.load("demo", "begles", "parcel", parcel)).version
    await bus.publisher.append(
        ParcelShipped(carrier="DHL"), tenant="begles", aggregate_id=parcel, expected_version=version
    )
    history = await bus.store.load("demo", "begles", "parcel", parcel)
    assert [e.data for e in history.events] == [
        ParcelRegistered(reference="a", weight_kg=1),
        ParcelShipped(carrier="DHL"),
    ]
    assert (await bus.store.load("demo", "begles", "parcel", new_id())).is_new


async def test_one_trace_runs_from_publish_to_consume(bus: Bus) -> None:
    capture = SpanCapture()
    parcel = new_id()
    done = asyncio.Event()

    async def handler(envelope: Envelope[Any]) -> None:
        if envelope.aggregate_id == parcel:
            done.set()

    stop, task = await run_consumer(bus, spec_for("trace"), handler)
    await bus.publisher.publish(
        ParcelRegistered(reference="t", weight_kg=1), tenant="bordeaux", aggregate_id=parcel
    )
    await asyncio.wait_for(done.wait(), 10)
    stop.set()
    await task

    producer = next(
        s
        for s in capture.spans
        if s.kind == SpanKind.PRODUCER
        and s.attributes
        and s.attributes.get("messaging.destination.name", "").endswith(
            f"{parcel}.parcel.registered"
        )
    )
    consumer = next(
        s
        for s in capture.spans
        if s.kind == SpanKind.CONSUMER
        and s.attributes
        and s.attributes.get("messaging.destination.name", "").endswith(
            f"{parcel}.parcel.registered"
        )
    )
    assert producer.context.trace_id == consumer.context.trace_id
    assert consumer.parent is not None
    assert consumer.parent.span_id == producer.context.span_id
    assert consumer.attributes["messaging.consumer.group.name"].startswith("test-trace")
    assert producer.attributes["mutualis.tenant"] == "bordeaux"


async def test_a_bulk_publish_is_one_send_span_per_window_parent_of_every_consumer_span(
    bus: Bus,
) -> None:
    capture = SpanCapture()
    parcels = [new_id() for _ in range(3)]
    handled: set[str] = set()
    done = asyncio.Event()

    async def handler(envelope: Envelope[Any]) -> None:
        if envelope.aggregate_id in parcels:
            handled.add(envelope.aggregate_id)
            if len(handled) == len(parcels):
                done.set()

    stop, task = await run_consumer(bus, spec_for("bulk-trace"), handler)
    await bus.publisher.publish_batch(
        [
            bus.publisher.envelope(
                ParcelRegistered(reference=p, weight_kg=1), tenant="pessac", aggregate_id=p
            )
            for p in parcels
        ]
    )
    await asyncio.wait_for(done.wait(), 10)
    stop.set()
    await task

    sends = [
        s
        for s in capture.spans
        if s.kind == SpanKind.PRODUCER
        and s.attributes
        and s.attributes.get("messaging.batch.message_count") == len(parcels)
        and s.attributes.get("mutualis.tenant") == "pessac"
    ]
    assert len(sends) == 1
    send = sends[0]
    assert send.name == "send demo.parcel.registered"
    subjects = {f"evt.demo.pessac.parcel.{p}.parcel.registered" for p in parcels}
    processed = [
        s
        for s in capture.spans
        if s.kind == SpanKind.CONSUMER
        and s.attributes
        and s.attributes.get("messaging.destination.name") in subjects
    ]
    assert len(processed) == len(parcels)
    for span in processed:
        assert span.context.trace_id == send.context.trace_id
        assert span.parent is not None
        assert span.parent.span_id == send.context.span_id


async def _ignore(envelope: Envelope[Any]) -> None:
    return None


async def _true(value: bool) -> bool:
    return value


async def test_a_concurrent_consumer_overlaps_aggregates_and_keeps_each_ones_order(
    bus: Bus,
) -> None:
    parcels = [new_id() for _ in range(4)]
    seen: dict[str, list[str]] = {p: [] for p in parcels}
    in_flight = 0
    most_in_flight = 0
    release = asyncio.Event()

    async def handler(envelope: Envelope[Any]) -> None:
        nonlocal in_flight, most_in_flight
        if envelope.aggregate_id not in seen:
            return
        in_flight += 1
        most_in_flight = max(most_in_flight, in_flight)
        if most_in_flight >= 4:
            release.set()  # every aggregate is being handled at once
        await asyncio.wait_for(release.wait(), 10)
        seen[envelope.aggregate_id].append(envelope.data.reference)
        in_flight -= 1

    envelopes = [
        bus.publisher.envelope(
            ParcelRegistered(reference=f"{n}", weight_kg=1), tenant="talence", aggregate_id=p
        )
        for n in range(3)
        for p in parcels
    ]
    await bus.publisher.publish_batch(envelopes)
    spec = replace(
        spec_for("concurrent"),
        filter_subjects=tuple(f"evt.demo.talence.parcel.{p}.>" for p in parcels),
        concurrency=4,
        batch=64,
    )
    stop, task = await run_consumer(bus, spec, handler)

    async def all_seen() -> bool:
        return all(len(references) == 3 for references in seen.values())

    await wait_for(all_seen)
    stop.set()
    await task
    assert most_in_flight == 4
    assert all(references == ["0", "1", "2"] for references in seen.values())


async def test_a_handler_longer_than_ack_wait_is_not_redelivered_meanwhile(bus: Bus) -> None:
    parcel = new_id()
    deliveries = 0

    async def slow(envelope: Envelope[Any]) -> None:
        nonlocal deliveries
        if envelope.aggregate_id != parcel:
            return
        deliveries += 1
        await asyncio.sleep(3.5)  # more than three times the ack wait: kept alive meanwhile

    spec = replace(
        spec_for("keepalive"),
        filter_subjects=(f"evt.demo.merignac.parcel.{parcel}.>",),
        ack_wait_s=1.0,
    )
    stop, task = await run_consumer(bus, spec, slow)
    await bus.publisher.publish(
        ParcelRegistered(reference="slow", weight_kg=1), tenant="merignac", aggregate_id=parcel
    )
    await wait_for(lambda: _true(deliveries == 1))
    await asyncio.sleep(4.5)
    stop.set()
    await task
    assert deliveries == 1


async def test_a_message_that_reached_a_stopping_consumer_unread_goes_to_another_at_once(
    bus: Bus,
) -> None:
    # ack_wait far longer than the test: only a NAK can bring the message back in time.
    spec = replace(spec_for("release"), ack_wait_s=60.0)
    await EventConsumer(bus.js, spec, {}, known=demo_catalog).ensure()
    stopping = await bus.js.pull_subscribe_bind(spec.durable, stream=spec.stream)
    await bus.publisher.publish(
        ParcelRegistered(reference="late", weight_kg=1), tenant="pessac", aggregate_id=new_id()
    )
    # What a pull request answered after its fetch stopped waiting looks like: delivered to
    # the subscription, never read by a fetch.
    await bus.nc.publish(
        f"$JS.API.CONSUMER.MSG.NEXT.{spec.stream}.{spec.durable}",
        b'{"batch": 1}',
        reply=stopping._deliver,
    )
    await wait_for(lambda: _true(stopping.pending_msgs >= 1))

    assert await release_unhandled(stopping) == 1
    await stopping.unsubscribe()

    other = await bus.js.pull_subscribe_bind(spec.durable, stream=spec.stream)
    (message,) = await other.fetch(1, timeout=5)
    assert message.metadata.num_delivered == 2
    await message.ack()
    await other.unsubscribe()
