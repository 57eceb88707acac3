"""Notifications: emails/s from a published event to SMTP acceptance, and event-to-inbox latency.

The service runs in-process as its tests wire it (`open_platform`, `build_deps`, the bootstrap's
consumers), on a three-datacenter cluster, against a real aiosmtpd server (the dev sink's
`MailSink`, which parses each mail and writes it to a JSON file, counted on acceptance).

Emails: identity `user.registered` events (the routing rule sends a welcome email, email only)
are published in one pipelined batch; the clock runs from the first publish to the SMTP
acceptance of the last mail. Per event the service projects the contact into its directory,
routes, renders the template, records the ledger entry, publishes `notification.requested`,
then the delivery consumer claims the entry (CAS), publishes `notification.sent`, hands off
over SMTP (a pooled session, as the adapter does), settles, publishes `notification.delivered`
and counts it. The per-tenant rate limit is raised out of the way
(it would otherwise cap the figure at its 50/s default: that is policy, not cost).
Raw baselines, measured before and after the service run (mean), sequential sends of messages
with the same subject and bodies to the same sink: `aiosmtplib.send` (one connection per mail:
the issue's baseline, `ratio`) and `SMTP.send_message` on one open connection (the fastest a
single sender can go: `ratio_vs_one_connection`). The service reuses connections, so the second
is the fairer comparison.

In-app latency: for an already registered agent, a parapheur `step.assigned` event is published
and the clock stops when the inbox item appears in the inbox KV bucket (a KV watcher). One event
at a time; the default rule sends the email first, then the in-app message, so the figure
includes that email's hand-off.
"""

from __future__ import annotations

import asyncio
import tempfile
import threading
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiosmtplib
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from bench.harness import latency_summary_ms, ratio, three_datacenters
from identity.domain.events import UserRegistered
from mutualis_kernel.bus.publisher import EventPublisher
from mutualis_kernel.events import Event
from mutualis_kernel.logging import configure_logging
from mutualis_kernel.runner import open_platform
from mutualis_kernel.service import ServiceManifest
from mutualis_kernel.streams import Resources, events_stream
from mutualis_kernel.testing.ports import free_port_block
from notifications import manifest
from notifications.bootstrap import build_deps, consumers, email_sender
from notifications.devsinks import list_mail
from notifications.devsinks.servers import MailSink
from notifications.settings import NotificationsSettings
from parapheur.domain.events import StepAssigned

TENANT = "merignac"
BENCH_MANIFEST = ServiceManifest(
    name="notifications",
    description=manifest.MANIFEST.description,
    default_port=8004,
    # The producers' streams too, so the routers can bind without identity/parapheur running.
    resources=manifest.RESOURCES
    + Resources(
        streams=tuple(
            events_stream(s, f"{s} events (bench)") for s in ("identity", "parapheur", "archive")
        )
    ),
    consumers=manifest.MANIFEST.consumers,
    event_modules=manifest.MANIFEST.event_modules,
)


class CountingSink(MailSink):
    """The dev sink, counting acceptances (it runs in aiosmtpd's own thread)."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self._lock = threading.Lock()
        self.accepted = 0
        self.last_accepted_at = 0.0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        reply = await super().handle_DATA(server, session, envelope)
        with self._lock:
            self.accepted += 1
            self.last_accepted_at = time.perf_counter()
        return reply


class Failures:
    """Counts `notification.failed` events (permanent or not) as they are published."""

    def __init__(self) -> None:
        self.count = 0

    async def seen(self, message: Any) -> None:
        self.count += 1


async def wait_for(
    sink: CountingSink, count: int, failures: Failures | None = None, timeout: float = 300.0
) -> float:
    deadline = time.perf_counter() + timeout
    while sink.accepted + (failures.count if failures else 0) < count:
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{sink.accepted} of {count} mails accepted")
        await asyncio.sleep(0.005)
    return sink.last_accepted_at


def registered(n: int, prefix: str) -> UserRegistered:
    return UserRegistered(
        user_id=f"{prefix}-{n:05d}",
        tenant=TENANT,
        kind="agent",
        roles=("agent",),
        email=f"{prefix}.{n:05d}@merignac.fr",
        name=f"Agent {n}",
    )


def raw_message(sample: dict[str, Any], n: int, started: float) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "ne-pas-repondre@mutualis.example"
    message["To"] = f"raw.{n:05d}@merignac.fr"
    message["Subject"] = sample["subject"]
    message["Message-ID"] = f"<raw-{n}-{started}@bench>"
    message.set_content(sample["text"])
    if sample["html"]:
        message.add_alternative(sample["html"], subtype="html")
    return message


async def raw_sends(
    port: int, sample: dict[str, Any], count: int, sink: CountingSink, *, one_connection: bool
) -> float:
    start_count = sink.accepted
    started = time.perf_counter()
    if one_connection:
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=10) as client:
            for n in range(count):
                await client.send_message(raw_message(sample, n, started))
    else:
        for n in range(count):
            message = raw_message(sample, n, started)
            await aiosmtplib.send(message, hostname="127.0.0.1", port=port, timeout=10)
    await wait_for(sink, start_count + count)
    return count / (time.perf_counter() - started)


async def service_emails(
    identity: EventPublisher, sink: CountingSink, failures: Failures, count: int, prefix: str
) -> tuple[float, int]:
    """(delivered mails/s, mails that failed instead); the clock stops at the last acceptance."""
    start_count = sink.accepted
    start_failed = failures.count
    envelopes = [
        identity.envelope(registered(n, prefix), tenant=TENANT, aggregate_id=f"{prefix}-{n:05d}")
        for n in range(count)
    ]
    started = time.perf_counter()
    await identity.publish_batch(envelopes)
    finished = await wait_for(sink, start_count + start_failed + count, failures)
    delivered = sink.accepted - start_count
    return delivered / (finished - started), failures.count - start_failed


async def inbox_latencies(
    parapheur: EventPublisher, inbox: Any, user_id: str, count: int
) -> list[float]:
    watcher = await inbox.watch(f"{TENANT}.>", ignore_deletes=True)
    while await watcher.updates(timeout=5) is not None:
        pass  # existing items, up to the end-of-initial-values marker
    samples = []
    for n in range(count):
        started = time.perf_counter()
        event: Event = StepAssigned(step=1, kind="signature", mode="any", users=(user_id,))
        await parapheur.publish(event, tenant=TENANT, aggregate_id=f"folder-{n:05d}")
        entry = await watcher.updates(timeout=30)
        assert entry is not None, "no inbox item"
        samples.append(time.perf_counter() - started)
    await watcher.stop()
    return samples


async def run(quick: bool = False) -> dict[str, Any]:
    configure_logging("bench", level="WARNING", fmt="json")
    emails = 40 if quick else 300
    latency_samples = 30 if quick else 200
    with tempfile.TemporaryDirectory(prefix="bench-notifications-") as tmp_name:
        mail_dir = Path(tmp_name) / "sink"
        port = free_port_block(1)
        sink = CountingSink(mail_dir)
        controller = Controller(sink, hostname="127.0.0.1", port=port)
        controller.start()
        try:
            with three_datacenters() as cluster:
                settings = NotificationsSettings(
                    dev_mode=True,
                    nats_urls=cluster.client_urls,
                    stream_replicas=3,
                    smtp_port=port,
                    rate_per_s=1_000_000.0,
                    rate_burst=1_000_000.0,
                    log_level="WARNING",
                )
                platform = await open_platform(settings, BENCH_MANIFEST)
                deps = await build_deps(platform, settings, email=email_sender(settings))
                built = consumers(platform, deps, settings)
                stop = asyncio.Event()
                tasks = [asyncio.create_task(c.run(stop)) for c in built]
                for consumer in built:
                    await asyncio.wait_for(consumer.ready.wait(), 60)
                identity = EventPublisher(platform.js, source_service="identity")
                parapheur = EventPublisher(platform.js, source_service="parapheur")

                # Warm-up: one welcome mail through the service; its text is the raw sample.
                failures = Failures()
                await platform.nc.subscribe(
                    f"evt.notifications.{TENANT}.*.*.notification.failed", cb=failures.seen
                )
                await service_emails(identity, sink, failures, 1, "warm")
                sample = list_mail(mail_dir)[-1]
                await raw_sends(port, sample, 5, sink, one_connection=False)

                raw_before = await raw_sends(port, sample, emails, sink, one_connection=False)
                pooled_before = await raw_sends(port, sample, emails, sink, one_connection=True)
                ours, failed = await service_emails(identity, sink, failures, emails, "agent")
                reasons = sorted(
                    {
                        n.reason or n.status
                        async for n, _ in deps.stores.notifications(TENANT)
                        if n.status != "delivered"
                    }
                )
                pooled_after = await raw_sends(port, sample, emails, sink, one_connection=True)
                raw_after = await raw_sends(port, sample, emails, sink, one_connection=False)
                raw = (raw_before + raw_after) / 2
                pooled = (pooled_before + pooled_after) / 2

                latencies = await inbox_latencies(
                    parapheur, deps.stores.inbox, "agent-00000", latency_samples
                )
                stop.set()
                await asyncio.wait(tasks, timeout=10)
                for task in tasks:
                    task.cancel()
                await platform.nc.close()
        finally:
            controller.stop()
    return {
        "workload": {
            "emails": emails,
            "email_event": "identity user.registered -> welcome email (text + HTML)",
            "email_bytes": len(sample["text"]) + len(sample["html"] or ""),
            "sink": "aiosmtpd (dev MailSink: parses and stores each mail), plain SMTP, loopback",
            "rate_limit": "raised to 1e6/s: the 50/s default is policy, not cost",
            "inapp_event": "parapheur step.assigned -> email then in-app item (default rule)",
            "cluster": "3 nats-server (one per datacenter), R3 streams and KV buckets",
        },
        "emails_per_s": {
            "raw_aiosmtplib": round(raw, 1),
            "raw_before": round(raw_before, 1),
            "raw_after": round(raw_after, 1),
            "raw_one_connection": round(pooled, 1),
            "raw_one_connection_before": round(pooled_before, 1),
            "raw_one_connection_after": round(pooled_after, 1),
            "service": round(ours, 1),
            "ratio": ratio(ours, raw),
            "ratio_vs_one_connection": ratio(ours, pooled),
            "target": 0.5,
            "not_delivered": failed,
            "not_delivered_reasons": reasons,
        },
        "event_to_inbox_latency": {"samples": latency_samples, **latency_summary_ms(latencies)},
    }
