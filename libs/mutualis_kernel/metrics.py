"""Named instruments for the domain metrics that dashboards and alerts are built on.

Owns the *names, units and attributes* of the business metrics every service reports (signatures
applied, records ingested, notifications, fixity checks, timestamping, SMTP relays, signing
certificates) and the consumer-lag gauge. `infra/prometheus/` and `infra/grafana/` refer to the
Prometheus names these produce (a dot becomes `_`, counters gain `_total`, a unit `s` becomes
`_seconds`, `By` becomes `_bytes`); `tests/infra/test_metric_names.py` fails when one of them
disappears, so rename here and there together.

Instruments come from the global MeterProvider that `telemetry.setup_telemetry` installed (or a
meter passed in, for tests). Building a `DomainMetrics` does no I/O; the composition root of a
service builds one and hands it to the adapters that need it. Attribute values must be of low
cardinality and free of personal data: a tenant slug, a level, a channel, never an address,
a name or a folder id.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Literal, Protocol

from nats.js import JetStreamContext
from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Meter, Observation

METER_NAME = "mutualis.domain"

# Instrument names (OpenTelemetry). Prometheus names are in the comments.
SIGNATURES_APPLIED = "mutualis.signatures.applied"  # mutualis_signatures_applied_total
RECORDS_INGESTED = "mutualis.archive.records.ingested"  # mutualis_archive_records_ingested_total
INGESTED_SIZE = "mutualis.archive.ingested.size"  # mutualis_archive_ingested_size_bytes_total
FIXITY_CHECKS = "mutualis.archive.fixity.checks"  # mutualis_archive_fixity_checks_total
NOTIFICATIONS = "mutualis.notifications"  # mutualis_notifications_total
TIMESTAMP_REQUESTS = "mutualis.tsa.requests"  # mutualis_tsa_requests_total
SMTP_ATTEMPTS = "mutualis.smtp.attempts"  # mutualis_smtp_attempts_total
CERTIFICATE_NOT_AFTER = "mutualis.signing.certificate.not_after"
# ^ mutualis_signing_certificate_not_after_seconds (a Unix time)
CONSUMER_PENDING = "mutualis.consumer.pending"  # mutualis_consumer_pending
CONSUMER_ACK_PENDING = "mutualis.consumer.ack_pending"  # mutualis_consumer_ack_pending

SignatureLevel = Literal["simple", "advanced", "qualified", "seal"]
NotificationChannel = Literal["email", "sms", "webhook", "in_app"]
NotificationStatus = Literal["queued", "sent", "delivered", "failed", "bounced", "suppressed"]
RelayRole = Literal["primary", "fallback"]


def _outcome(ok: bool) -> str:
    return "ok" if ok else "failed"


class DomainMetrics:
    """The business counters of the platform; one per process, shared by its adapters.

    Every method is cheap (an in-memory add) and never raises on the hot path.
    """

    def __init__(self, meter: Meter | None = None) -> None:
        meter = meter or metrics.get_meter(METER_NAME)
        self._signatures = meter.create_counter(
            SIGNATURES_APPLIED, unit="{signature}", description="Signatures and seals applied"
        )
        self._records = meter.create_counter(
            RECORDS_INGESTED, unit="{record}", description="Records ingested by the archive"
        )
        self._ingested_size = meter.create_counter(
            INGESTED_SIZE, unit="By", description="Bytes of content ingested by the archive"
        )
        self._fixity = meter.create_counter(
            FIXITY_CHECKS, unit="{check}", description="Fixity checks of archived content"
        )
        self._notifications = meter.create_counter(
            NOTIFICATIONS, unit="{notification}", description="Notifications by channel and status"
        )
        self._timestamps = meter.create_counter(
            TIMESTAMP_REQUESTS, unit="{request}", description="RFC 3161 timestamp requests"
        )
        self._smtp = meter.create_counter(
            SMTP_ATTEMPTS, unit="{attempt}", description="Deliveries attempted per SMTP relay"
        )
        self._certificates: dict[tuple[str, str], float] = {}
        self._certificates_lock = threading.Lock()
        meter.create_observable_gauge(
            CERTIFICATE_NOT_AFTER,
            callbacks=[self._observe_certificates],
            unit="s",
            description="End of validity of each signing certificate, as a Unix time",
        )

    def signature_applied(self, tenant: str, level: SignatureLevel) -> None:
        """A signature (or, with level `seal`, an organisation's seal) was applied to a folder."""
        self._signatures.add(1, {"mutualis.tenant": tenant, "signature.level": level})

    def record_ingested(self, tenant: str, size_bytes: int) -> None:
        """The archive stored one record of `size_bytes` bytes of content."""
        attributes = {"mutualis.tenant": tenant}
        self._records.add(1, attributes)
        self._ingested_size.add(size_bytes, attributes)

    def fixity_checked(self, tenant: str, ok: bool) -> None:
        """A fixity check of one record ended; `ok=False` means the content no longer matches."""
        self._fixity.add(1, {"mutualis.tenant": tenant, "outcome": _outcome(ok)})

    def notification(
        self, tenant: str, channel: NotificationChannel, status: NotificationStatus
    ) -> None:
        """A notification reached `status` on `channel` (count each transition once)."""
        self._notifications.add(
            1,
            {
                "mutualis.tenant": tenant,
                "notification.channel": channel,
                "notification.status": status,
            },
        )

    def timestamp_requested(self, tsa: str, ok: bool) -> None:
        """An RFC 3161 request to the timestamping authority `tsa` (its host name) ended."""
        self._timestamps.add(1, {"server.address": tsa, "outcome": _outcome(ok)})

    def smtp_attempt(self, relay: str, role: RelayRole, ok: bool) -> None:
        """One delivery attempt through `relay` (host name); `fallback` means we failed over."""
        self._smtp.add(
            1, {"server.address": relay, "smtp.relay.role": role, "outcome": _outcome(ok)}
        )

    def signing_certificate(self, name: str, tenant: str, not_after: datetime) -> None:
        """Report (or update) the end of validity of a signing or seal certificate.

        `name` is the key label or a short certificate name, never a person's name.
        """
        with self._certificates_lock:
            self._certificates[(name, tenant)] = not_after.timestamp()

    def _observe_certificates(self, _: CallbackOptions) -> Iterable[Observation]:
        with self._certificates_lock:
            known = list(self._certificates.items())
        return [
            Observation(not_after, {"certificate": name, "mutualis.tenant": tenant})
            for (name, tenant), not_after in known
        ]


class ConsumerRef(Protocol):
    """What identifies a durable consumer; `bus.spec.ConsumerSpec` is one."""

    @property
    def stream(self) -> str: ...

    @property
    def durable(self) -> str: ...


class ConsumerLag:
    """Observable gauges of the messages waiting for each durable consumer.

    A collection must not block: the Prometheus scrape runs on the event loop that talks to
    NATS, so waiting there for `consumer_info` would deadlock. Each collection returns the
    values of the last poll and starts the next one (at most one in flight, each call bounded
    by `timeout_s`). The gauge is thus at most one scrape interval old; a consumer that cannot
    be read is left out rather than reported with an old value.
    """

    def __init__(
        self,
        js: JetStreamContext,
        consumers: Sequence[ConsumerRef],
        *,
        timeout_s: float = 1.0,
        meter: Meter | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self._js = js
        self._consumers = [(c.stream, c.durable) for c in consumers]
        self._timeout_s = timeout_s
        self._loop = loop or asyncio.get_running_loop()
        self._pending: dict[tuple[str, str], tuple[int, int]] = {}
        self._lock = threading.Lock()
        self._in_flight: concurrent.futures.Future[None] | None = None
        self._closed = False
        meter = meter or metrics.get_meter(METER_NAME)
        meter.create_observable_gauge(
            CONSUMER_PENDING,
            callbacks=[self._observe_pending],
            unit="{message}",
            description="Messages of the stream not yet delivered to the durable consumer",
        )
        meter.create_observable_gauge(
            CONSUMER_ACK_PENDING,
            callbacks=[self._observe_ack_pending],
            unit="{message}",
            description="Messages delivered to the durable consumer and not yet acknowledged",
        )

    async def refresh(self) -> None:
        """Poll every consumer once, concurrently, each bounded by `timeout_s`."""
        results = await asyncio.gather(
            *(self._poll(stream, durable) for stream, durable in self._consumers)
        )
        with self._lock:
            for key, value in zip(self._consumers, results, strict=True):
                if value is None:
                    self._pending.pop(key, None)
                else:
                    self._pending[key] = value

    def close(self) -> None:
        """Stop polling and report nothing more (instruments cannot be unregistered)."""
        self._closed = True
        with self._lock:
            self._pending.clear()

    async def _poll(self, stream: str, durable: str) -> tuple[int, int] | None:
        try:
            info = await asyncio.wait_for(
                self._js.consumer_info(stream, durable), timeout=self._timeout_s
            )
        except Exception:  # noqa: BLE001
            # Timeout, consumer gone, connection down: all mean "unknown", and a gauge must
            # never crash a scrape. The consumer is left out until a poll reads it again.
            return None
        return int(info.num_pending or 0), int(info.num_ack_pending or 0)

    def _schedule_refresh(self) -> None:
        if self._closed or self._loop.is_closed():
            return
        if self._in_flight is not None and not self._in_flight.done():
            return
        # Safe from the loop's thread (a scrape) and from an exporter's thread alike.
        with contextlib.suppress(RuntimeError):
            self._in_flight = asyncio.run_coroutine_threadsafe(self.refresh(), self._loop)

    def _snapshot(self) -> list[tuple[tuple[str, str], tuple[int, int]]]:
        self._schedule_refresh()
        with self._lock:
            return list(self._pending.items())

    def _observe_pending(self, _: CallbackOptions) -> Iterable[Observation]:
        return [Observation(value[0], _attributes(key)) for key, value in self._snapshot()]

    def _observe_ack_pending(self, _: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            known = list(self._pending.items())
        return [Observation(value[1], _attributes(key)) for key, value in known]


def _attributes(key: tuple[str, str]) -> dict[str, str]:
    stream, durable = key
    return {"messaging.destination.name": stream, "messaging.consumer.group.name": durable}


async def register_consumer_lag(
    js: JetStreamContext,
    consumers: Sequence[ConsumerRef],
    *,
    timeout_s: float = 1.0,
    meter: Meter | None = None,
) -> ConsumerLag:
    """Create the consumer-lag gauges for `consumers` and take a first reading.

    Call once per process, from the composition root, on the loop that owns `js`; keep the
    result and `close()` it when the NATS connection goes away.
    """
    lag = ConsumerLag(js, consumers, timeout_s=timeout_s, meter=meter)
    await lag.refresh()
    return lag
