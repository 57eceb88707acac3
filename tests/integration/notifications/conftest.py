"""A notifications instance in-process on a real cluster, with real SMTP sinks (aiosmtpd)."""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from mutualis_kernel.bus.consumer import EventConsumer
from mutualis_kernel.bus.store import EventStore
from mutualis_kernel.metrics import DomainMetrics
from mutualis_kernel.runner import Platform, open_platform
from mutualis_kernel.runtime import LocalCluster
from mutualis_kernel.service import ServiceManifest
from mutualis_kernel.streams import Resources, StreamSpec
from mutualis_kernel.testing.ports import free_port_block
from notifications import manifest
from notifications.bootstrap import build_deps, consumers, email_sender
from notifications.devsinks import list_mail
from notifications.devsinks.servers import smtp_controller
from notifications.domain.model import Notification
from notifications.service_layer.handlers import Deps
from notifications.service_layer.ports import EmailSender
from notifications.settings import NotificationsSettings


# The producers' streams, as their manifests declare them, so the routers can bind.
def _events_stream_of(service: str) -> StreamSpec:
    # The producers' own specs: a stream made differently here would clash with theirs
    # (archive's refuses deletes, a setting no update may take back).
    producer = importlib.import_module(f"{service}.manifest").MANIFEST
    return next(s for s in producer.resources.streams if s.name == f"{service.upper()}_EVENTS")


PRODUCER_STREAMS = Resources(
    streams=tuple(_events_stream_of(s) for s in ("identity", "parapheur", "archive"))
)
TEST_MANIFEST = ServiceManifest(
    name="notifications",
    description=manifest.MANIFEST.description,
    default_port=8004,
    resources=manifest.RESOURCES + PRODUCER_STREAMS,
    consumers=manifest.MANIFEST.consumers,
    event_modules=manifest.MANIFEST.event_modules,
)


def self_signed(directory: Path) -> tuple[ssl.SSLContext, Path]:
    """A server TLS context for 127.0.0.1 and the certificate file clients trust."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    import ipaddress

    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path = directory / "smtp.pem"
    key_path = directory / "smtp.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    return context, cert_path


@dataclass
class Running:
    platform: Platform
    deps: Deps
    settings: NotificationsSettings
    consumers: list[EventConsumer]
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


def settings_for(cluster: LocalCluster, **overrides: Any) -> NotificationsSettings:
    values: dict[str, Any] = {
        "dev_mode": True,
        "nats_urls": cluster.urls_for("dc1"),
        "stream_replicas": 3,
        "retry_first_delay_s": 0.2,
        "log_level": "WARNING",
        **overrides,
    }
    return NotificationsSettings(**values)


@asynccontextmanager
async def running_service(
    settings: NotificationsSettings,
    *,
    wrap_email: Callable[[EmailSender], EmailSender] | None = None,
    metrics: DomainMetrics | None = None,
) -> AsyncIterator[Running]:
    platform = await open_platform(settings, TEST_MANIFEST)
    email = email_sender(settings, metrics=metrics)
    deps = await build_deps(platform, settings, email=wrap_email(email) if wrap_email else email)
    built = consumers(platform, deps, settings)
    run = Running(platform, deps, settings, built)
    run.tasks = [asyncio.create_task(c.run(run.stop)) for c in built]
    try:
        for consumer in built:
            await asyncio.wait_for(consumer.ready.wait(), 30)
        yield run
    finally:
        run.stop.set()
        await asyncio.wait(run.tasks, timeout=10)
        for task in run.tasks:
            task.cancel()
        await platform.nc.close()


async def eventually(
    check: Callable[[], Awaitable[Any]], *, timeout: float = 30.0, what: str = "condition"
) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await check()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s")
        await asyncio.sleep(0.1)


@asynccontextmanager
async def smtp_sink(directory: Path, **kwargs: Any) -> AsyncIterator[Any]:
    port = free_port_block(1)
    controller, sink = smtp_controller(directory, port, **kwargs)
    controller.start()
    sink.port = port
    try:
        yield sink
    finally:
        controller.stop()


def mails(directory: Path) -> list[dict[str, Any]]:
    return list_mail(directory)


async def ledger(run: Running, tenant: str) -> list[Notification]:
    return [n async for n, _ in run.deps.stores.notifications(tenant)]


async def settled_entries(run: Running, tenant: str, count: int) -> list[Notification]:
    """The tenant's ledger once it holds `count` entries, all settled (else empty: poll)."""
    entries = await ledger(run, tenant)
    return entries if len(entries) == count and all(n.is_terminal for n in entries) else []


async def status_events(run: Running, tenant: str, notification_id: str) -> list[Any]:
    """The events `notifications` published about one notification, in stream order."""
    history = await EventStore(run.platform.js).load(
        "notifications", tenant, "notification", notification_id
    )
    return [envelope.data for envelope in history.events]


@asynccontextmanager
async def http_server(app: Any) -> AsyncIterator[str]:
    """A real uvicorn server for `app` on a free loopback port; yields its base URL."""
    port = free_port_block(1)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        log_config=None,
        # An SSE stream never ends by itself: do not wait on it when the test is over.
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait([task], timeout=10)
        task.cancel()


@dataclass
class Recorder:
    """What a test HTTP peer received, and what it answers (one status per request, then 2xx)."""

    received: list[dict[str, Any]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    always: int | None = None
    hits: int = 0
    #: Record the request, then never answer (a gateway that took it and went silent).
    hang: bool = False

    def answer(self) -> int | None:
        self.hits += 1
        if self.always is not None:
            return self.always
        return self.statuses.pop(0) if self.statuses else None


# Module-level imports above on purpose: FastAPI resolves these apps' annotations (strings,
# with `from __future__ import annotations`) in this module's namespace.
def sms_gateway_app(name: str, recorder: Recorder) -> FastAPI:
    """A test SMS gateway (no real operator can run here): the generic JSON/HTTP provider.

    Accepts `POST /sms` like the provider the adapter targets, answers 202 with its own message
    id, or the status the test asks for.
    """
    app = FastAPI()

    @app.post("/sms")
    async def receive(request: Request) -> JSONResponse:
        forced = recorder.answer()
        if forced is not None:
            return JSONResponse({"error": "forced by the test"}, status_code=forced)
        body = await request.json()
        message_id = f"{name}-{len(recorder.received) + 1}"
        recorder.received.append({**body, "headers": dict(request.headers), "id": message_id})
        if recorder.hang:
            await asyncio.Event().wait()
        return JSONResponse({"id": message_id}, status_code=202)

    return app


def callback_receiver_app(recorder: Recorder) -> FastAPI:
    """A calling application's status endpoint: keeps the raw body and the signature header."""
    app = FastAPI()

    @app.post("/callbacks/notifications")
    async def receive(request: Request) -> Response:
        recorder.received.append(
            {
                "body": await request.body(),
                "signature": request.headers.get("x-mutualis-signature", ""),
            }
        )
        return Response(status_code=recorder.answer() or 204)

    return app
