"""The composition root: settings, NATS, stores, keys, provider, the FastAPI app, the run loop."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import structlog
import uvicorn
from fastapi import FastAPI
from nats.aio.client import Client as NATS

from identity.adapters.eventlog import EventLog
from identity.adapters.keys import KeyStore
from identity.adapters.projector import SequencedConsumer, projector
from identity.adapters.repository import Stores
from identity.adapters.throttle import FailureMirror
from identity.devseed import seed_dev
from identity.domain.security import PasswordPolicy, Passwords
from identity.entrypoints.api import api_router
from identity.entrypoints.oidc import oidc_router
from identity.manifest import RESOURCES
from identity.service_layer.handlers import Deps
from identity.service_layer.provider import Provider
from identity.settings import IdentitySettings
from mutualis_kernel import __version__
from mutualis_kernel.bus.connection import connect
from mutualis_kernel.bus.publisher import EventPublisher
from mutualis_kernel.http import create_app
from mutualis_kernel.logging import configure_logging
from mutualis_kernel.streams import KERNEL_RESOURCES, apply_resources_patiently
from mutualis_kernel.telemetry import setup_telemetry
from mutualis_kernel.tenants import default_tenants

log = structlog.get_logger("identity")


@dataclass
class Identity:
    settings: IdentitySettings
    nc: NATS
    provider: Provider
    app: FastAPI
    projector: SequencedConsumer


async def build(settings: IdentitySettings, *, apply: bool = True) -> Identity:
    nc = await connect(settings)
    js = nc.jetstream()
    if apply:
        await apply_resources_patiently(js, [KERNEL_RESOURCES, RESOURCES], settings.stream_replicas)
    stores = await Stores.open(js)
    passwords = Passwords(
        PasswordPolicy(
            memory_kib=settings.argon2_memory_kib,
            time_cost=settings.argon2_time_cost,
            parallelism=settings.argon2_parallelism,
        )
    )
    publisher = EventPublisher(
        js,
        source_service="identity",
        datacenter=settings.datacenter,
        deadline_s=settings.publish_deadline_s,
    )
    deps = Deps(
        stores, publisher, passwords, default_tenants(), EventLog(js), dev_mode=settings.dev_mode
    )
    # Retired keys stay published as long as a token they signed can still be presented.
    keys = KeyStore(
        stores.keys,
        settings.key_encryption_secret.get_secret_value(),
        publish_after_retire_s=max(settings.access_token_ttl_s, settings.id_token_ttl_s) + 60,
    )
    await keys.ensure_key()
    if settings.dev_mode:
        created = await seed_dev(deps)
        log.info("identity.dev_seed", created=created)
    failures = FailureMirror(stores.throttle.kv, settings.throttle_window_s)
    provider = Provider(deps, keys, settings, failures)

    async def nats_ready() -> str | None:
        return None if nc.is_connected else "not connected to NATS"

    app = create_app(
        title="Mutualis identity",
        version="0.1.0",
        settings=settings,
        readiness={"nats": nats_ready},
    )
    secure = (
        settings.secure_cookies if settings.secure_cookies is not None else not settings.dev_mode
    )
    app.include_router(oidc_router(provider, secure_cookies=secure))
    app.include_router(api_router(provider))
    return Identity(settings, nc, provider, app, projector(js, stores))


@asynccontextmanager
async def serving(identity: Identity) -> AsyncIterator[uvicorn.Server]:
    """Uvicorn serving the app, the projector and the key watch until the block exits;
    then stop HTTP, the background tasks, and drain NATS."""
    config = uvicorn.Config(
        identity.app,
        host=identity.settings.http_host,
        port=identity.settings.http_port,
        log_level="warning",
        log_config=None,  # the kernel's structlog configuration formats uvicorn's logs
        lifespan="off",
        timeout_keep_alive=identity.settings.http_keep_alive_s,
    )
    server = uvicorn.Server(config)
    stop = asyncio.Event()
    background = [
        asyncio.create_task(identity.projector.run(stop)),
        asyncio.create_task(identity.provider.keys.watch(stop)),
    ]
    if identity.provider.failures is not None:
        background.append(asyncio.create_task(identity.provider.failures.watch(stop)))
    if identity.settings.signing_key_max_age_days > 0:
        rotation = identity.provider.keys.rotate_periodically(
            identity.settings.signing_key_max_age_days * 86400,
            stop,
            check_every_s=identity.settings.signing_key_check_every_s,
        )
        background.append(asyncio.create_task(rotation))
    task = asyncio.create_task(server.serve())
    while not server.started and not task.done():  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
        await asyncio.sleep(0.02)
    try:
        yield server
    finally:
        server.should_exit = True
        await task
        stop.set()
        await asyncio.gather(*background, return_exceptions=True)
        identity.provider.close()
        await identity.nc.drain()


async def run(settings: IdentitySettings | None = None) -> None:
    """Run until SIGTERM/SIGINT (the lifecycle in one function, for the shared runner)."""
    settings = settings or IdentitySettings()
    configure_logging("identity", level=settings.log_level, fmt=settings.log_format)
    telemetry = setup_telemetry(
        "identity", service_version=__version__, datacenter=settings.datacenter
    )
    identity = await build(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with serving(identity):
            log.info("identity.started", issuer=identity.settings.issuer)
            await stop.wait()
    finally:
        telemetry.shutdown()
