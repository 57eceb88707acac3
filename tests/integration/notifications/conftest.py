"""A notifications instance in-process on a real cluster, with real SMTP sinks (aiosmtpd)."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mutualis_kernel.bus.consumer import EventConsumer
from mutualis_kernel.runner import Platform, open_platform
from mutualis_kernel.runtime import LocalCluster
from mutualis_kernel.service import ServiceManifest
from mutualis_kernel.streams import Resources, events_stream
from mutualis_kernel.testing.ports import free_port_block
from notifications import manifest
from notifications.bootstrap import build_deps, consumers, email_sender
from notifications.devsinks import list_mail
from notifications.devsinks.servers import smtp_controller
from notifications.service_layer.handlers import Deps
from notifications.service_layer.ports import EmailSender
from notifications.settings import NotificationsSettings

# The producers' streams, as their manifests declare them, so the routers can bind.
PRODUCER_STREAMS = Resources(
    streams=tuple(
        events_stream(s, f"{s} events (test)") for s in ("identity", "parapheur", "archive")
    )
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
) -> AsyncIterator[Running]:
    platform = await open_platform(settings, TEST_MANIFEST)
    email = email_sender(settings)
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
