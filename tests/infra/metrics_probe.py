"""A tiny Mutualis process that exercises every kernel metric, then prints its `/metrics`.

Run in a subprocess by `test_metric_names.py` (the global MeterProvider is installed once per
process, so a fresh interpreter is the only way to know what a service really exposes):

    python tests/infra/metrics_probe.py nats://127.0.0.1:4222 metrics.txt

It serves a kernel app (`create_app`), makes a good, a missing and a failing request, publishes
events (and one that exhausts its retries), consumes them with one handler failure that ends
in a dead letter, calls every `DomainMetrics` method, registers the consumer-lag gauges, then
writes the Prometheus exposition text of `/metrics` to the file named (not stdout: logs
go there).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

import httpx
import nats

from mutualis_kernel.bus.consumer import EventConsumer
from mutualis_kernel.bus.errors import PublishTimeout
from mutualis_kernel.bus.publisher import EventPublisher
from mutualis_kernel.bus.spec import ConsumerSpec
from mutualis_kernel.config import KernelSettings
from mutualis_kernel.events import Envelope, SubjectFilter
from mutualis_kernel.http import create_app
from mutualis_kernel.metrics import DomainMetrics, register_consumer_lag
from mutualis_kernel.streams import (
    KERNEL_RESOURCES,
    Resources,
    apply_resources_patiently,
    events_stream,
)
from mutualis_kernel.telemetry import setup_telemetry
from mutualis_kernel.testing.demo_events import ParcelRegistered, demo_catalog


async def probe(nats_url: str) -> str:
    app = create_app(title="probe", version="0", settings=KernelSettings())

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("the probe fails on purpose")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://probe") as http:
        await http.get("/healthz")
        await http.get("/no-such-route")
        await http.get("/boom")

        nc = await nats.connect(servers=[nats_url])
        try:
            js = nc.jetstream()
            # The stream does not exist yet: every attempt is retried until the deadline.
            early = EventPublisher(js, source_service="demo", deadline_s=0.3)
            with contextlib.suppress(PublishTimeout):
                await early.publish(
                    ParcelRegistered(reference="x", weight_kg=1.0),
                    tenant="bordeaux",
                    aggregate_id="x",
                )
            resources = KERNEL_RESOURCES + Resources(streams=(events_stream("demo", "Demo"),))
            await apply_resources_patiently(js, resources, 1)
            publisher = EventPublisher(js, source_service="demo", datacenter="dc1")
            for reference in ("good", "poison"):
                await publisher.publish(
                    ParcelRegistered(reference=reference, weight_kg=1.0),
                    tenant="bordeaux",
                    aggregate_id=reference,
                )

            spec = ConsumerSpec(
                durable="probe",
                stream="DEMO_EVENTS",
                filter_subjects=(SubjectFilter.event("demo", "parcel.registered"),),
                service="demo",
                description="metrics probe",
                max_deliver=2,
                backoff_s=(0.05,),
            )
            handled = asyncio.Event()

            async def handle(envelope: Envelope[ParcelRegistered]) -> None:
                if envelope.data.reference == "poison":
                    raise RuntimeError("poison parcel")
                handled.set()

            consumer = EventConsumer(js, spec, {ParcelRegistered: handle}, known=demo_catalog)
            stop = asyncio.Event()
            task = asyncio.create_task(consumer.run(stop))
            await asyncio.wait_for(handled.wait(), 15)
            await _until_dead_lettered(http)
            stop.set()
            await task

            domain = DomainMetrics()
            domain.signature_applied("bordeaux", "advanced")
            domain.record_ingested("bordeaux", 2048)
            domain.fixity_checked("bordeaux", ok=False)
            domain.notification("bordeaux", "email", "sent")
            domain.timestamp_requested("tsa.invalid", ok=False)
            domain.smtp_attempt("relay.invalid", "fallback", ok=True)
            domain.signing_certificate("seal", "bordeaux", datetime(2030, 1, 1, tzinfo=UTC))
            await register_consumer_lag(js, [spec])

            return (await http.get("/metrics")).text
        finally:
            await nc.close()


async def _until_dead_lettered(http: httpx.AsyncClient) -> None:
    # The consumer counts the dead letter after it is stored: poll the scrape, with a deadline.
    deadline = asyncio.get_running_loop().time() + 15
    while "mutualis_events_dead_lettered_total{" not in (await http.get("/metrics")).text:
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("no dead letter counted")
        await asyncio.sleep(0.05)


def main() -> None:
    os.environ.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    setup_telemetry("probe", service_version="0", datacenter="dc1")
    Path(sys.argv[2]).write_text(asyncio.run(probe(sys.argv[1])))


if __name__ == "__main__":
    main()
