"""The kernel's pull fetch (bus.pull) against a real cluster: the batch semantics consumers
rely on, the same messages nats-py's own fetch gives, and no task per message.

Bounds such as `asyncio.wait_for(..., 10)` around a fetch with a 30 s timeout are liveness
checks (it came back with what was there instead of waiting its timeout out), not timings.
"""

import asyncio
import json
from collections.abc import Sequence

import nats.errors
import pytest
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig
from nats.js.errors import ServiceUnavailableError

from mutualis_kernel.bus import pull
from mutualis_kernel.events.ids import new_event_id
from mutualis_kernel.runtime import LocalCluster
from mutualis_kernel.testing.demo_events import ParcelRegistered

from .conftest import Bus

STREAM = "DEMO_EVENTS"


async def parcel_consumer(
    bus: Bus, name: str, parcel: str | None = None
) -> tuple[str, JetStreamContext.PullSubscription]:
    """A durable pull subscription on one parcel's events (a new parcel unless given)."""
    parcel = parcel or new_event_id().replace("-", "")
    durable = f"pull-{name}-{parcel[:12]}"
    await bus.js.add_consumer(
        STREAM,
        ConsumerConfig(
            durable_name=durable,
            ack_policy=AckPolicy.EXPLICIT,
            filter_subject=f"evt.demo.pessac.parcel.{parcel}.>",
        ),
    )
    subscription = await bus.js.pull_subscribe_bind(durable, stream=STREAM)
    await until_answering(subscription)
    return parcel, subscription


async def until_answering(subscription: JetStreamContext.PullSubscription) -> None:
    """Until the new consumer answers pulls: for a moment after its creation the server this
    client is connected to may not know of it yet, and a pull meets "no responders" (503),
    as a consumer's fetch loop would, and ride out (seen once in CI)."""
    for _ in range(100):
        try:
            await pull.fetch(subscription, 1, 0.2)
        except nats.errors.TimeoutError:
            return  # answered: nothing there yet
        except ServiceUnavailableError:
            await asyncio.sleep(0.1)
    raise AssertionError("the consumer never answered a pull")


async def publish(bus: Bus, parcel: str, count: int) -> None:
    for n in range(count):
        await bus.publisher.publish(
            ParcelRegistered(reference=f"R{n}", weight_kg=n), tenant="pessac", aggregate_id=parcel
        )


def references(messages: Sequence[Msg]) -> list[str]:
    return [json.loads(message.data)["reference"] for message in messages]


async def test_a_fetch_returns_what_is_there_without_waiting_for_a_full_batch(bus: Bus) -> None:
    parcel, subscription = await parcel_consumer(bus, "there")
    await publish(bus, parcel, 5)
    # "There" as the consumer counts it: it learns of a stored message a moment after the ack.
    for _ in range(200):
        if (await subscription.consumer_info()).num_pending == 5:
            break
        await asyncio.sleep(0.05)

    messages = await asyncio.wait_for(pull.fetch(subscription, 50, 30.0), 10)

    assert references(messages) == ["R0", "R1", "R2", "R3", "R4"]
    for message in messages:
        await message.ack()


async def test_a_fetch_takes_no_more_than_its_batch_and_the_next_one_takes_the_rest(
    bus: Bus,
) -> None:
    parcel, subscription = await parcel_consumer(bus, "batch")
    await publish(bus, parcel, 7)

    first = await pull.fetch(subscription, 3, 5.0)
    for message in first:
        await message.ack()
    rest: list[Msg] = []
    while len(first) + len(rest) < 7:
        rest += await pull.fetch(subscription, 10, 5.0)

    assert references(first) == ["R0", "R1", "R2"]
    assert references(rest) == ["R3", "R4", "R5", "R6"]


async def test_a_fetch_with_nothing_to_give_times_out(bus: Bus) -> None:
    _, subscription = await parcel_consumer(bus, "empty")

    with pytest.raises(nats.errors.TimeoutError):
        await pull.fetch(subscription, 10, 0.3)


async def test_events_published_while_a_fetch_waits_are_all_delivered_once_in_order(
    bus: Bus,
) -> None:
    parcel, subscription = await parcel_consumer(bus, "waiting")
    waiting = asyncio.create_task(pull.fetch(subscription, 10, 30.0))
    await asyncio.sleep(0.3)  # the fetch is now waiting on its lingering request
    await publish(bus, parcel, 4)

    got = list(await asyncio.wait_for(waiting, 10))
    # What that request delivered after its fetch returned starts the next batch.
    while len(got) < 4:
        got += await pull.fetch(subscription, 10, 5.0)

    assert references(got) == ["R0", "R1", "R2", "R3"]
    sequences = [message.metadata.sequence.stream for message in got]
    assert sequences == sorted(set(sequences))


async def test_it_gives_the_messages_nats_py_fetch_gives(bus: Bus) -> None:
    parcel, ours = await parcel_consumer(bus, "ours")
    _, theirs = await parcel_consumer(bus, "theirs", parcel)
    await publish(bus, parcel, 12)

    mine: list[Msg] = []
    nats_py: list[Msg] = []
    while len(mine) < 12:
        mine += await pull.fetch(ours, 5, 5.0)
    while len(nats_py) < 12:
        nats_py += await theirs.fetch(5, timeout=5.0)

    def seen(messages: list[Msg]) -> list[tuple[int, str, bytes]]:
        return [(m.metadata.sequence.stream, m.subject, m.data) for m in messages]

    assert seen(mine) == seen(nats_py)
    assert [m.headers for m in mine] == [m.headers for m in nats_py]


async def test_a_closed_connection_is_reported_as_such(nats_cluster: LocalCluster) -> None:
    from .conftest import open_bus

    bus = await open_bus(nats_cluster)
    _, subscription = await parcel_consumer(bus, "closed")
    await bus.nc.close()

    with pytest.raises(nats.errors.ConnectionClosedError):
        await pull.fetch(subscription, 10, 1.0)


class PullSubscriptionStub:
    """A stand-in (named so) for a nats-py release whose pull subscription lacks the
    attributes the kernel's fetch reads: no real subscription can lack them."""

    def __init__(self) -> None:
        self.asked: list[tuple[int, float | None]] = []

    async def fetch(self, batch: int = 1, timeout: float | None = 5) -> list[str]:
        self.asked.append((batch, timeout))
        return ["from nats-py"]


async def test_without_the_attributes_it_reads_it_leaves_the_fetch_to_nats_py() -> None:
    stub = PullSubscriptionStub()

    got = await pull.fetch(stub, 7, 2.0)  # type: ignore[arg-type]

    assert (got, stub.asked) == (["from nats-py"], [(7, 2.0)])


@pytest.mark.parametrize(("batch", "timeout"), [(0, 1.0), (5, 0.0)])
async def test_a_bad_batch_or_timeout_is_refused(batch: int, timeout: float) -> None:
    with pytest.raises(ValueError, match="invalid"):
        await pull.fetch(PullSubscriptionStub(), batch, timeout)  # type: ignore[arg-type]


async def test_a_batch_makes_no_task_per_message(bus: Bus) -> None:
    parcel, subscription = await parcel_consumer(bus, "tasks")
    await publish(bus, parcel, 40)
    created = 0
    loop = asyncio.get_running_loop()
    factory = loop.get_task_factory()

    def counting(loop: asyncio.AbstractEventLoop, coro: object, **kwargs: object) -> object:
        nonlocal created
        created += 1
        return asyncio.Task(coro, loop=loop, **kwargs)  # type: ignore[arg-type]

    loop.set_task_factory(counting)  # type: ignore[arg-type]
    try:
        got: list[Msg] = []
        while len(got) < 40:
            got += await pull.fetch(subscription, 40, 5.0)
    finally:
        loop.set_task_factory(factory)

    # A wait only when the queue ran dry (a few times, as the socket delivers); nats-py's
    # fetch makes two tasks per message, 80 here.
    assert created <= 10
    assert references(got) == [f"R{n}" for n in range(40)]
    await asyncio.gather(*(message.ack() for message in got))
