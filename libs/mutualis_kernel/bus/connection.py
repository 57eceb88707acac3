"""Connecting to NATS: local datacenter first, reconnect forever, quiet but logged."""

from __future__ import annotations

import asyncio
import logging
import ssl

import nats
import nats.errors
import structlog
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from mutualis_kernel.bus.leaders import waiting_retries, watch_leader_elections
from mutualis_kernel.config import KernelSettings

log = structlog.get_logger("mutualis_kernel.bus")


def connection_of(js: JetStreamContext) -> NATS:
    """The connection a JetStream context speaks through, for the raw protocol nats-py has no
    helper for (batched direct gets, snapshots, inboxes made before a consumer)."""
    nc: NATS = js._nc  # nats-py keeps it there and offers no accessor
    return nc


class QuietTlsClose(logging.Filter):
    """Drops asyncio's "returning true from eof_received() has no effect when using ssl".

    asyncio logs it each time nats-py closes a TLS connection; it says nothing actionable and
    would fill services' logs and operators' terminals.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "eof_received()" not in record.getMessage()


logging.getLogger("asyncio").addFilter(QuietTlsClose())


class RequestAbandoned(nats.errors.TimeoutError):
    """A request whose connection dropped before its answer came: no answer will come.

    A timeout that did not wait: code that handles a request timing out (retry, or accept
    that the outcome is unknown) handles this the same way, only sooner.
    """

    def __str__(self) -> str:
        return "nats: request abandoned, its connection was lost"


def abandon_requests_in_flight(client: NATS) -> int:
    """Fail at once the requests whose connection was lost; returns how many.

    nats-py leaves them waiting for their whole timeout (seconds) although their answer, if
    any, went to the connection that is gone. Failed as `RequestAbandoned` (a timeout, so
    transient), they are sent again by the kernel's retries as soon as the client has
    reconnected (the retries are idempotent: event ids, compare-and-set revisions). A
    graceful restart of the node a service talks to then costs that service a reconnect,
    not a request timeout.
    """
    pending = getattr(client, "_resp_map", None)  # nats-py's futures for new-style requests
    if not isinstance(pending, dict):
        return 0
    # A request still in nats-py's outgoing buffer was never sent: nats-py sends it once
    # reconnected, and its answer comes to the same inbox. Only the sent ones are lost.
    unsent = b"".join(getattr(client, "_pending", None) or [])
    abandoned = 0
    for token, future in list(pending.items()):
        if not isinstance(future, asyncio.Future) or future.done():
            continue
        if isinstance(token, str) and token.encode() in unsent:
            continue
        future.set_exception(RequestAbandoned())
        abandoned += 1
    return abandoned


def inbox_prefix(service: str) -> str:
    """Where a service's replies come back (`_INBOX.<service>.<id>`).

    Its own prefix, so that the server can let each service read only its own replies and
    the messages pulled by its own consumers (`runtime.security`), not another service's."""
    return f"_INBOX.{service}"


async def connect(settings: KernelSettings, *, name: str | None = None) -> NATS:
    """A NATS connection that survives a datacenter loss.

    The URL list puts the local datacenter's node first and randomisation is off, so an
    instance talks to its own datacenter while it lives and fails over to the others. The
    servers' news of elected leaders wakes its retries (bus.leaders).
    """

    async def on_error(error: Exception) -> None:
        # nats-py's default callback logs a whole traceback per reconnect attempt.
        log.warning("nats.error", error=str(error) or type(error).__name__)

    async def on_disconnected() -> None:
        abandoned = abandon_requests_in_flight(client)
        log.warning("nats.disconnected", requests_abandoned=abandoned)

    async def on_reconnected() -> None:
        url = client.connected_url
        # Requests abandoned with the old connection can be heard now: ask again at once.
        woken = waiting_retries.wake()
        log.info("nats.reconnected", server=url.netloc if url else "", retries_woken=woken)

    tls: ssl.SSLContext | None = None
    if settings.nats_tls_ca_file:
        tls = ssl.create_default_context(cafile=settings.nats_tls_ca_file)

    client = await nats.connect(
        servers=settings.nats_urls,
        name=name or f"{settings.service_name}@{settings.datacenter}",
        connect_timeout=settings.nats_connect_timeout_s,
        ping_interval=settings.nats_ping_interval_s,
        max_outstanding_pings=settings.nats_max_outstanding_pings,
        reconnect_time_wait=0.25,
        max_reconnect_attempts=-1,
        dont_randomize=True,
        allow_reconnect=True,
        inbox_prefix=inbox_prefix(settings.service_name),
        user_credentials=settings.nats_credentials_file,
        nkeys_seed=settings.nats_nkey_seed_file,
        tls=tls,
        error_cb=on_error,
        disconnected_cb=on_disconnected,
        reconnected_cb=on_reconnected,
    )
    await watch_leader_elections(client)
    return client
