"""The parapheur's composition root: real adapters on an open `Platform`, the API, the loops.

`wire(platform, ...)` is what `mutualis_kernel.runner.run` calls; tests call it too, with a
signer and a verifier of their own, against a real NATS cluster.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from fastapi import FastAPI

from mutualis_kernel import __version__
from mutualis_kernel.auth import TokenVerifier
from mutualis_kernel.bus.consumer import EventConsumer
from mutualis_kernel.events import Envelope, Event
from mutualis_kernel.health import nats_readiness
from mutualis_kernel.http import create_app
from mutualis_kernel.metrics import DomainMetrics
from mutualis_kernel.runner import Platform, Wiring
from mutualis_kernel.tenants import default_tenants
from parapheur import manifest
from parapheur.adapters.deadlines import NatsDeadlines, ensure_stream, run_deadline_consumer
from parapheur.adapters.documents import ObjectStoreDocuments
from parapheur.adapters.feed import run_erasure_feed, run_feed
from parapheur.adapters.pdf import PdfChecker
from parapheur.adapters.repository import (
    JetStreamFolders,
    KeyValueCircuits,
    KeyValueDelegations,
    KeyValueErasures,
)
from parapheur.domain.commands import ApplySeal, DeadlineReached
from parapheur.domain.events import StepAssigned
from parapheur.entrypoints.api import ApiContext, build_router
from parapheur.service_layer import handlers
from parapheur.service_layer.ports import DocumentSigner
from parapheur.service_layer.projection import TaskBoard
from parapheur.settings import ParapheurSettings

log = structlog.get_logger("parapheur.bootstrap")


def trust_signer(
    settings: ParapheurSettings, metrics: DomainMetrics | None = None
) -> tuple[DocumentSigner | None, Callable[[], None]]:
    """The PKCS#11-backed signer the settings describe, or None when no module is configured.

    Reports the seal certificates already issued to `metrics` (the process's one, by default)
    at once, so that an expiring seal is alerted on without waiting for the tenant's next seal.
    """
    from mutualis_trust.identities import SigningIdentities, SoftwareIdentities
    from mutualis_trust.pkcs11 import Token, TokenConfig, software_fallback_allowed
    from mutualis_trust.pki import DevPki
    from parapheur.adapters.signing import METRICS, TrustSigner

    metrics = metrics or METRICS

    if settings.pkcs11_module is None:
        if not software_fallback_allowed(settings.dev_mode):
            log.warning("signing.disabled", reason="MUTUALIS_PKCS11_MODULE is not set")
            return None, lambda: None
        # Dev mode without any PKCS#11 module: software keys, said loudly (see the warning).
        software = SoftwareIdentities(DevPki.load_or_create(settings.pki_dir), metrics)
        software.report_certificates()
        fallback = TrustSigner(
            software,
            default_tenants(),
            tsa_url=settings.tsa_url,
            level=settings.pades_level,
            visible_stamp=settings.visible_stamp,
            metrics=metrics,
        )
        return fallback, lambda: None

    token = Token.connect(
        TokenConfig(
            module_path=settings.pkcs11_module,
            token_label=settings.pkcs11_token_label,
            user_pin=settings.pkcs11_pin,
            softhsm2_conf=settings.softhsm2_conf,
        )
    )
    identities = SigningIdentities(DevPki.load_or_create(settings.pki_dir), token, metrics)
    identities.report_certificates()
    signer = TrustSigner(
        identities,
        default_tenants(),
        tsa_url=settings.tsa_url,
        level=settings.pades_level,
        visible_stamp=settings.visible_stamp,
        metrics=metrics,
    )
    return signer, token.close


async def wire(
    platform: Platform,
    *,
    signer: DocumentSigner | None = None,
    verifier: TokenVerifier | None = None,
) -> Wiring:
    settings = platform.settings
    assert isinstance(settings, ParapheurSettings)
    on_stop: list[Callable[[], Awaitable[None]]] = []
    if signer is None:
        # Off the event loop's thread: SoftHSM (OpenSSL backend) leaves errors in the OpenSSL
        # error queue of the thread that initialises it, and Python's ssl takes a stale error
        # there for a failure of the next TLS read on that thread — the NATS connection's.
        signer, close_token = await asyncio.to_thread(trust_signer, settings)

        async def close() -> None:
            close_token()

        on_stop.append(close)
    await ensure_stream(platform.js, settings.stream_replicas)
    folders = JetStreamFolders(platform.store, platform.publisher)
    board = TaskBoard()
    deps = handlers.Deps(
        folders=folders,
        documents=ObjectStoreDocuments(platform.js, manifest.DOCUMENTS),
        circuits=KeyValueCircuits(platform.js, manifest.CIRCUITS),
        delegations=KeyValueDelegations(platform.js, manifest.DELEGATIONS),
        inspector=PdfChecker(settings.max_document_bytes),
        deadlines=NatsDeadlines(platform.js, deadline_s=settings.publish_deadline_s),
        publisher=platform.publisher,
        signer=signer,
        workdir=settings.work_dir,
        reminder_before=timedelta(seconds=settings.reminder_before_s),
        signature_location=settings.signature_location,
        on_saved=[board.update],
    )
    erasures = KeyValueErasures(platform.js, manifest.ERASURES)
    # Loaded before the app is built, so that not even the first request shows an erased
    # person; the erasure feed then brings those recorded later, by any instance.
    for tenant, digest in await erasures.all():
        board.erase_digest(tenant, digest)

    app = build_app(settings, platform, deps, board, folders, verifier)

    async def on_deadline(tenant: str, folder_id: str, which: Any) -> None:
        await handlers.deadline_reached(DeadlineReached(tenant, folder_id, which), deps)

    async def deadlines_loop(stop: asyncio.Event) -> None:
        await run_deadline_consumer(platform.js, on_deadline, stop)

    async def feed_loop(stop: asyncio.Event) -> None:
        await run_feed(platform.js, board, stop)

    async def erasure_feed_loop(stop: asyncio.Event) -> None:
        await run_erasure_feed(platform.js, manifest.ERASURES, board, stop)

    return Wiring(
        app=app,
        consumers=[seal_consumer(platform, deps), *erasure_consumers(platform, erasures, board)],
        background=[feed_loop, erasure_feed_loop, deadlines_loop],
        on_stop=on_stop,
    )


def build_app(
    settings: ParapheurSettings,
    platform: Platform,
    deps: handlers.Deps,
    board: TaskBoard,
    folders: JetStreamFolders,
    verifier: TokenVerifier | None,
) -> FastAPI:
    app = create_app(
        title="Mutualis parapheur",
        version=__version__,
        settings=settings,
        readiness={
            "nats": nats_readiness(lambda: platform.nc, lambda: platform.js, ["PARAPHEUR_EVENTS"]),
            "tasks": board_readiness(board),
        },
        upload_limits={"/v1/folders": settings.max_upload_bytes},
    )
    context = ApiContext(
        deps=deps,
        board=board,
        folders=folders,
        verifier=verifier or TokenVerifier.for_service(settings, "mutualis:parapheur"),
        max_document_bytes=settings.max_document_bytes,
    )
    app.include_router(build_router(context))
    return app


#: How long after a seal step is assigned the safety net waits for the inline seal.
SEAL_GRACE = timedelta(seconds=5)


class SealNotYetDue(Exception):
    """The instance that assigned the seal step is probably sealing right now: retry later."""


def seal_consumer(platform: Platform, deps: handlers.Deps) -> EventConsumer:
    """The safety net for seals: a seal step still waiting after a grace period is applied
    here, with the consumer's retries and dead letter when signing keeps failing."""

    async def on_step_assigned(envelope: Envelope[Event]) -> None:
        event = envelope.data
        assert isinstance(event, StepAssigned)
        if event.kind != "seal":
            return
        if datetime.now(UTC) - envelope.time < SEAL_GRACE:
            raise SealNotYetDue(f"seal of {envelope.aggregate_id} assigned just now")
        await handlers.apply_seal(ApplySeal(envelope.tenant, envelope.aggregate_id), deps)

    return EventConsumer(platform.js, manifest.SEAL_CONSUMER, {StepAssigned: on_step_assigned})


def board_readiness(board: TaskBoard) -> Callable[[], Awaitable[str | None]]:
    """Not ready until the task board has replayed the stream: tasks would look missing."""

    async def check() -> str | None:
        return None if board.caught_up else "task board still replaying PARAPHEUR_EVENTS"

    return check


def erasure_consumers(
    platform: Platform, erasures: KeyValueErasures, board: TaskBoard
) -> list[EventConsumer]:
    """React to identity's `user.erased` when identity's event types are installed."""
    try:
        identity_events = importlib.import_module("identity.domain.events")
    except ModuleNotFoundError:
        log.warning("erasure.pending", reason="identity.domain.events is not installed")
        return []
    user_erased: type[Event] = identity_events.UserErased

    async def on_user_erased(envelope: Envelope[Event]) -> None:
        # The consumer is shared by every instance: the bucket is what tells the others
        # (each follows it, `run_erasure_feed`); this instance need not wait for its echo.
        user_id = str(getattr(envelope.data, "user_id"))  # noqa: B009 - identity's model
        await erasures.record(envelope.tenant, user_id)
        board.erase(envelope.tenant, user_id)

    return [EventConsumer(platform.js, manifest.ERASURE_CONSUMER, {user_erased: on_user_erased})]
