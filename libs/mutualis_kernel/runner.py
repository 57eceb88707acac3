"""The lifecycle every service shares: connect, wire, serve, and stop in reverse order.

A service's composition root (`<service>/bootstrap.py`) hands `serve` its settings, its
manifest and a `wire` function that builds the FastAPI app, the event consumers and any
background loops from an open `Platform`. This module owns the rest: logging, telemetry,
the NATS connection, the JetStream resources, uvicorn, SIGTERM, and the drain.

Start order: telemetry and logs -> NATS -> resources -> wiring -> consumers and HTTP.
Stop order (SIGTERM or SIGINT): stop taking HTTP requests -> let consumers finish the batch
in hand -> drain NATS (pending publishes are flushed) -> flush telemetry.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import structlog
import uvicorn
import uvloop
from fastapi import FastAPI
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from mutualis_kernel import __version__
from mutualis_kernel.bus.connection import connect
from mutualis_kernel.bus.consumer import EventConsumer
from mutualis_kernel.bus.publisher import EventPublisher
from mutualis_kernel.bus.store import EventStore
from mutualis_kernel.config import KernelSettings
from mutualis_kernel.logging import configure_logging
from mutualis_kernel.metrics import ConsumerLag, register_consumer_lag
from mutualis_kernel.service import ServiceManifest
from mutualis_kernel.streams import KERNEL_RESOURCES, apply_resources_patiently
from mutualis_kernel.telemetry import setup_telemetry

log = structlog.get_logger("mutualis_kernel.runner")

BackgroundLoop = Callable[[asyncio.Event], Coroutine[Any, Any, None]]


@dataclass
class Platform:
    """The connections a service instance holds, created once by the runner."""

    settings: KernelSettings
    manifest: ServiceManifest
    nc: NATS
    js: JetStreamContext
    publisher: EventPublisher
    store: EventStore


@dataclass
class Wiring:
    """What a service's composition root builds on a `Platform`."""

    app: FastAPI
    consumers: Sequence[EventConsumer] = ()
    background: Sequence[BackgroundLoop] = ()
    on_stop: list[Callable[[], Awaitable[None]]] = field(default_factory=list)


Wire = Callable[[Platform], Awaitable[Wiring]]


async def open_platform(settings: KernelSettings, manifest: ServiceManifest) -> Platform:
    nc = await connect(settings)
    js = nc.jetstream()
    await _apply_with_patience(js, manifest, settings)
    publisher = EventPublisher(
        js,
        source_service=manifest.name,
        datacenter=settings.datacenter,
        deadline_s=settings.publish_deadline_s,
    )
    return Platform(settings, manifest, nc, js, publisher, EventStore(js))


async def _apply_with_patience(
    js: JetStreamContext, manifest: ServiceManifest, settings: KernelSettings
) -> None:
    # Resources are applied by `mutualis up`/the Helm hook too; doing it here as well makes
    # a lone instance self-sufficient, and an instance restarted beside a node that is still
    # catching up waits for it rather than exiting.
    await apply_resources_patiently(
        js, KERNEL_RESOURCES + manifest.resources, settings.stream_replicas, patience_s=90
    )


async def serve(settings: KernelSettings, manifest: ServiceManifest, wire: Wire) -> None:
    configure_logging(manifest.name, level=settings.log_level, fmt=settings.log_format)
    telemetry = setup_telemetry(
        manifest.name, service_version=__version__, datacenter=settings.datacenter
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(signum: int, _: FrameType | None) -> None:
        loop.call_soon_threadsafe(stop.set)

    # Plain handlers, not loop.add_signal_handler: uvicorn swaps in its own while serving
    # and, when it is done, puts ours back and re-raises the signal it caught.
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    platform = await open_platform(settings, manifest)
    try:
        wiring = await wire(platform)
        server = uvicorn.Server(
            uvicorn.Config(
                wiring.app,
                host=settings.http_host,
                port=settings.http_port,
                log_config=None,
                access_log=False,
                timeout_keep_alive=settings.http_keep_alive_s,
                timeout_graceful_shutdown=max(1, int(settings.drain_timeout_s)),
            )
        )
        # Consumer lag, read on each metrics scrape, for every consumer the service declares.
        lag = await register_consumer_lag(platform.js, manifest.consumers)
        wiring.on_stop.append(_closing(lag))
        workers = [asyncio.create_task(c.run(stop)) for c in wiring.consumers]
        workers += [asyncio.create_task(loop_(stop)) for loop_ in wiring.background]
        http = asyncio.create_task(server.serve())
        log.info(
            "service.started",
            service=manifest.name,
            datacenter=settings.datacenter,
            port=settings.http_port,
        )
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({http, stopping, *workers}, return_when=asyncio.FIRST_COMPLETED)
        for task in (http, *workers):
            if task.done() and task.exception() is not None:
                log.error("service.component_failed", error=repr(task.exception()))
        log.info("service.stopping", service=manifest.name)
        server.should_exit = True
        stop.set()
        await asyncio.wait({http, *workers}, timeout=settings.drain_timeout_s)
        for hook in wiring.on_stop:
            await hook()
    finally:
        try:
            await asyncio.wait_for(platform.nc.drain(), timeout=settings.drain_timeout_s)
        except TimeoutError:
            await platform.nc.close()
        telemetry.shutdown()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        log.info("service.stopped", service=manifest.name)


def _closing(lag: ConsumerLag) -> Callable[[], Awaitable[None]]:
    async def close() -> None:
        lag.close()

    return close


def run_main(main: Coroutine[Any, Any, None]) -> None:
    """Run a service process's main coroutine on uvloop (libuv), the platform's event loop.

    A service is I/O-bound: many small NATS replies and HTTP requests per unit of work, so
    the loop's own cost shows (bench/identity measured a fifth less event-loop CPU per
    request than with asyncio's selector loop). Tests keep asyncio's loop; the behaviour
    they check is the same on both.
    """
    uvloop.run(main)


def run(settings: KernelSettings, manifest: ServiceManifest, wire: Wire) -> None:
    """`python -m <service>` ends here."""
    run_main(serve(settings, manifest, wire))
