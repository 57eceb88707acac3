"""Kernel publish + consume throughput against raw nats-py, on the same R3 stream, same run.

Raw baseline: nats-py `publish_async` of a JSON dict with a `Nats-Msg-Id` header in windows of
256, then a durable pull consumer that fetches 256 at a time, parses the JSON and acks.
Kernel: `EventPublisher.publish_batch` (envelope, pydantic serialisation, CloudEvents headers,
a PRODUCER span per window of 256 whose trace context every event carries) and
`EventConsumer` (the kernel's own fetch, decoding and validation against the model, a CONSUMER
span per event, structured-log context, explicit ack). For reference, the raw consumer again
with the kernel's fetch (bus.pull) in place of nats-py's: how much of the kernel's consume
rate is that fetch rather than less work per event.
Tracing runs with an SDK tracer provider and a batch processor whose exporter drops spans, so
span creation, recording and batching are all paid; logging is configured as in production.
Also: one-at-a-time publish latency (p50/p99), raw `js.publish` against `EventPublisher.publish`.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
import uuid
from collections.abc import Sequence
from typing import Any

import nats
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, Sampler, SamplingResult

from bench.harness import latency_summary_ms, ratio, three_datacenters
from mutualis_kernel.bus import pull
from mutualis_kernel.bus.consumer import EventConsumer
from mutualis_kernel.bus.publisher import EventPublisher
from mutualis_kernel.bus.spec import ConsumerSpec
from mutualis_kernel.events import Envelope, SubjectFilter
from mutualis_kernel.logging import configure_logging
from mutualis_kernel.streams import KERNEL_RESOURCES, Resources, apply_resources, events_stream
from mutualis_kernel.testing.demo_events import ParcelRegistered, demo_catalog

WINDOW = 256


class Switch(Sampler):
    """Sample everything while on; nothing while off (spans become non-recording)."""

    def __init__(self) -> None:
        self.on = True

    def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
        return (ALWAYS_ON if self.on else ALWAYS_OFF).should_sample(*args, **kwargs)

    def get_description(self) -> str:
        return "bench switch"


class DroppingExporter(SpanExporter):
    """Spans are made, recorded and batched, then dropped: tracing cost without a collector."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def event(n: int) -> ParcelRegistered:
    return ParcelRegistered(reference=f"REF-{n:08d}-{'x' * 180}", weight_kg=n / 10)


async def raw_publish(js: JetStreamContext, tenant: str, count: int) -> float:
    started = time.perf_counter()
    for start in range(0, count, WINDOW):
        futures = []
        for n in range(start, min(start + WINDOW, count)):
            body = json.dumps({"reference": f"REF-{n:08d}-{'x' * 180}", "weight_kg": n / 10})
            subject = f"evt.demo.{tenant}.parcel.p{n}.parcel.registered"
            headers = {"Nats-Msg-Id": uuid.uuid4().hex}
            futures.append(await js.publish_async(subject, body.encode(), headers=headers))
        await asyncio.gather(*(asyncio.wait_for(f, 10) for f in futures))
    return time.perf_counter() - started


async def raw_consume(
    js: JetStreamContext, tenant: str, count: int, *, kernel_fetch: bool = False
) -> float:
    """With `kernel_fetch`, batches come through the kernel's fetch (bus.pull) instead of
    nats-py's: a reference that shows how much of the kernel's consume rate is that fetch."""
    durable = f"raw-{tenant}"
    await js.add_consumer(
        "DEMO_EVENTS",
        ConsumerConfig(
            durable_name=durable,
            ack_policy=AckPolicy.EXPLICIT,
            filter_subject=SubjectFilter.tenant(tenant, "demo"),
            max_ack_pending=10_000,
        ),
    )
    subscription = await js.pull_subscribe_bind(durable, stream="DEMO_EVENTS")
    seen = 0
    started = time.perf_counter()
    while seen < count:
        batch = (
            await pull.fetch(subscription, WINDOW, 5.0)
            if kernel_fetch
            else await subscription.fetch(WINDOW, timeout=5)
        )
        for message in batch:
            json.loads(message.data)
            await message.ack()
            seen += 1
    return time.perf_counter() - started


async def kernel_publish(publisher: EventPublisher, tenant: str, count: int) -> float:
    started = time.perf_counter()
    envelopes: list[Envelope[Any]] = []
    for n in range(count):
        envelopes.append(publisher.envelope(event(n), tenant=tenant, aggregate_id=f"p{n}"))
        if len(envelopes) == WINDOW:
            await publisher.publish_batch(envelopes, window=WINDOW)
            envelopes = []
    if envelopes:
        await publisher.publish_batch(envelopes, window=WINDOW)
    return time.perf_counter() - started


async def kernel_consume(js: JetStreamContext, tenant: str, count: int) -> float:
    seen = 0
    done = asyncio.Event()

    async def handle(envelope: Envelope[ParcelRegistered]) -> None:
        nonlocal seen
        seen += 1
        if seen >= count:
            done.set()

    spec = ConsumerSpec(
        durable=f"kernel-{tenant}",
        stream="DEMO_EVENTS",
        filter_subjects=(SubjectFilter.tenant(tenant, "demo"),),
        service="demo",
        description="bench",
        batch=WINDOW,
        max_ack_pending=10_000,
    )
    consumer = EventConsumer(js, spec, {ParcelRegistered: handle}, known=demo_catalog)
    await consumer.ensure()
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    await consumer.ready.wait()
    started = time.perf_counter()
    await done.wait()
    elapsed = time.perf_counter() - started
    stop.set()
    await task
    return elapsed


async def sync_latencies(
    js: JetStreamContext, publisher: EventPublisher, count: int
) -> dict[str, Any]:
    raw: list[float] = []
    ours: list[float] = []
    for n in range(count):
        body = json.dumps({"reference": f"REF-{n}", "weight_kg": 1.0}).encode()
        started = time.perf_counter()
        await js.publish(
            f"evt.demo.talence.parcel.s{n}.parcel.registered",
            body,
            headers={"Nats-Msg-Id": uuid.uuid4().hex},
        )
        raw.append(time.perf_counter() - started)
        started = time.perf_counter()
        await publisher.publish(event(n), tenant="begles", aggregate_id=f"s{n}")
        ours.append(time.perf_counter() - started)
    return {"raw": latency_summary_ms(raw), "kernel": latency_summary_ms(ours)}


ROUNDS = 3
#: The kernel's side publishes for real tenants (it refuses others), one per round; the raw
#: side's subjects only need to differ.
KERNEL_TENANTS = ("bordeaux", "merignac", "pessac")


async def one_round(
    js: JetStreamContext, publisher: EventPublisher, count: int, round_: int
) -> dict[str, float]:
    """Seconds for each leg, raw and kernel side by side (tenants of this round only)."""
    raw, reference, kernel = f"raw-{round_}", f"reference-{round_}", KERNEL_TENANTS[round_]
    raw_pub = await raw_publish(js, raw, count)
    await raw_publish(js, reference, count)
    kernel_pub = await kernel_publish(publisher, kernel, count)
    return {
        "raw_pub": raw_pub,
        "kernel_pub": kernel_pub,
        "raw_con": await raw_consume(js, raw, count),
        "raw_con_kernel_fetch": await raw_consume(js, reference, count, kernel_fetch=True),
        "kernel_con": await kernel_consume(js, kernel, count),
    }


def round_figures(seconds: dict[str, float], count: int) -> dict[str, Any]:
    raw_e2e = count / (seconds["raw_pub"] + seconds["raw_con"])
    kernel_e2e = count / (seconds["kernel_pub"] + seconds["kernel_con"])
    return {
        "publish_per_s": {
            "raw": round(count / seconds["raw_pub"]),
            "kernel": round(count / seconds["kernel_pub"]),
            "ratio": ratio(seconds["raw_pub"], seconds["kernel_pub"]),
        },
        "consume_per_s": {
            "raw": round(count / seconds["raw_con"]),
            "kernel": round(count / seconds["kernel_con"]),
            "ratio": ratio(seconds["raw_con"], seconds["kernel_con"]),
            "reference_raw_with_kernel_fetch": round(count / seconds["raw_con_kernel_fetch"]),
            "ratio_to_raw_with_kernel_fetch": ratio(
                seconds["raw_con_kernel_fetch"], seconds["kernel_con"]
            ),
        },
        "publish_then_consume_per_s": {
            "raw": round(raw_e2e),
            "kernel": round(kernel_e2e),
            "ratio": ratio(kernel_e2e, raw_e2e),
        },
    }


def median_round(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Each figure's median over the rounds (this VM's speed drifts between minutes)."""
    return {
        leg: {key: statistics.median(r[leg][key] for r in rounds) for key in rounds[0][leg]}
        for leg in rounds[0]
    }


async def run(quick: bool = False) -> dict[str, Any]:
    count = 4_000 if quick else 20_000
    sync_count = 300 if quick else 2_000
    configure_logging("bench", level="WARNING", fmt="json")
    switch = Switch()
    provider = TracerProvider(sampler=switch)
    provider.add_span_processor(BatchSpanProcessor(DroppingExporter()))
    trace.set_tracer_provider(provider)

    with three_datacenters() as cluster:
        nc = await nats.connect(servers=cluster.client_urls)
        js = nc.jetstream()
        await apply_resources(
            js, KERNEL_RESOURCES + Resources(streams=(events_stream("demo", "bench"),)), 3
        )
        publisher = EventPublisher(js, source_service="demo", datacenter="dc1")
        # Warm both paths (connections, inbox subscriptions, JIT-free but cache-warm).
        await raw_publish(js, "ambares-et-lagrave", 512)
        await kernel_publish(publisher, "blanquefort", 512)

        rounds = [
            round_figures(await one_round(js, publisher, count, n), count) for n in range(ROUNDS)
        ]
        latencies = await sync_latencies(js, publisher, sync_count)
        switch.on = False
        untraced_pub = await kernel_publish(publisher, "floirac", count)
        untraced_con = await kernel_consume(js, "floirac", count)
        switch.on = True
        await nc.close()
    provider.shutdown()

    median = median_round(rounds)
    untraced_e2e = count / (untraced_pub + untraced_con)
    raw_e2e = median["publish_then_consume_per_s"]["raw"]
    return {
        "workload": {
            "events": count,
            "window": WINDOW,
            "rounds": ROUNDS,
            "stream": "DEMO_EVENTS, R3, one replica per datacenter (3 nats-server on loopback)",
            "event_bytes": len(event(0).model_dump_json()),
            "figures": "median over the rounds of each figure and ratio; each round runs raw "
            "and kernel one after the other",
        },
        "publish_per_s": median["publish_per_s"],
        "consume_per_s": median["consume_per_s"],
        "publish_then_consume_per_s": {**median["publish_then_consume_per_s"], "target": 0.7},
        "rounds": rounds,
        "sync_publish_latency": latencies,
        "kernel_without_tracing_per_s": {
            "publish": round(count / untraced_pub),
            "consume": round(count / untraced_con),
            "publish_then_consume": round(untraced_e2e),
            "ratio_to_raw": ratio(untraced_e2e, raw_e2e),
            "tracing_cost": ratio(median["publish_then_consume_per_s"]["kernel"], untraced_e2e),
        },
    }
