"""The composition root: stores, channels, handlers, the API and the consumers on a Platform."""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import timedelta

from mutualis_kernel import __version__
from mutualis_kernel.auth import TokenVerifier
from mutualis_kernel.bus.consumer import EventConsumer, Handler
from mutualis_kernel.bus.spec import ConsumerSpec
from mutualis_kernel.events import Envelope, Event, catalog
from mutualis_kernel.health import nats_readiness
from mutualis_kernel.http import create_app
from mutualis_kernel.metrics import DomainMetrics
from mutualis_kernel.runner import Platform, Wiring, run
from mutualis_kernel.tenants import default_tenants
from notifications import manifest
from notifications.adapters.sms import FailoverSms, JsonHttpGateway
from notifications.adapters.smtp import FailoverEmail, SmtpRelay
from notifications.adapters.stores import Stores
from notifications.domain.events import NotificationRequested
from notifications.domain.model import RetryPolicy
from notifications.entrypoints.api import api_router
from notifications.service_layer import handlers
from notifications.service_layer.handlers import Deps
from notifications.service_layer.ports import EmailSender, SmsSender
from notifications.settings import NotificationsSettings

#: Producers whose events may become notifications; their event modules are imported when
#: installed so the catalog can decode them. A producer not installed is simply not routed.
PRODUCERS = {
    "parapheur": manifest.ROUTER,
    "identity": manifest.IDENTITY_ROUTER,
    "archive": manifest.ARCHIVE_ROUTER,
}


def email_sender(
    settings: NotificationsSettings, *, metrics: DomainMetrics | None = None
) -> FailoverEmail:
    """The relays, primary then secondary; every attempt counted on `metrics` (by default
    the service's domain metrics)."""
    common = {
        "starttls": settings.smtp_starttls,
        "username": settings.smtp_username,
        "password": settings.smtp_password.get_secret_value() if settings.smtp_password else None,
        "ca_file": settings.smtp_ca_file,
        "timeout_s": settings.smtp_timeout_s,
        "sender": settings.mail_from,
        "pool_size": settings.smtp_pool_size,
    }
    relays = [SmtpRelay("smtp-primary", settings.smtp_host, settings.smtp_port, **common)]  # type: ignore[arg-type]
    if settings.smtp_secondary_host:
        relays.append(
            SmtpRelay(
                "smtp-secondary",
                settings.smtp_secondary_host,
                settings.smtp_secondary_port,
                **common,  # type: ignore[arg-type]
            )
        )
    return FailoverEmail(relays, metrics or handlers.METRICS)


def sms_sender(settings: NotificationsSettings) -> FailoverSms:
    token = settings.sms_gateway_token.get_secret_value() if settings.sms_gateway_token else None
    timeout = settings.sms_timeout_s
    gateways = [JsonHttpGateway("sms-primary", settings.sms_gateway_url, token, timeout)]
    if settings.sms_secondary_gateway_url:
        gateways.append(
            JsonHttpGateway("sms-secondary", settings.sms_secondary_gateway_url, token, timeout)
        )
    return FailoverSms(gateways)


def load_producer_events() -> list[str]:
    loaded = []
    for service in PRODUCERS:
        try:
            importlib.import_module(f"{service}.domain.events")
        except ModuleNotFoundError:
            continue
        loaded.append(service)
    return loaded


def consumers(
    platform: Platform, deps: Deps, settings: NotificationsSettings
) -> list[EventConsumer]:
    async def route(envelope: Envelope[Event]) -> None:
        await handlers.route_event(envelope, deps)

    async def deliver(envelope: Envelope[Event]) -> None:
        await handlers.deliver(envelope, deps)

    built = []
    for service in load_producer_events():
        routed: dict[type[Event], Handler] = {
            info.model: route for info in catalog if info.service == service
        }
        built.append(EventConsumer(platform.js, PRODUCERS[service], routed))
    # NAKed with the delay the handler chose (RetryLater: retry policy, rate limit, live lease).
    spec: ConsumerSpec = replace(manifest.DELIVERIES, ack_wait_s=settings.delivery_ack_wait_s)
    built.append(EventConsumer(platform.js, spec, {NotificationRequested: deliver}))
    return built


async def build_deps(
    platform: Platform,
    settings: NotificationsSettings,
    *,
    email: EmailSender | None = None,
    sms: SmsSender | None = None,
) -> Deps:
    return Deps(
        stores=await Stores.open(platform.js, settings_ttl_s=settings.settings_cache_s),
        publisher=platform.publisher,
        email=email or email_sender(settings),
        sms=sms or sms_sender(settings),
        tenants=default_tenants(),
        retry=RetryPolicy(
            max_attempts=settings.max_attempts,
            first_delay_s=settings.retry_first_delay_s,
            factor=settings.retry_factor,
            max_delay_s=settings.retry_max_delay_s,
        ),
        sending_lease=timedelta(seconds=settings.sending_lease_s),
        rate_per_s=settings.rate_per_s,
        rate_burst=settings.rate_burst,
        dev_mode=settings.dev_mode,
        callback_timeout_s=settings.callback_timeout_s,
    )


def wiring_for(platform: Platform, deps: Deps, settings: NotificationsSettings) -> Wiring:
    app = create_app(
        title="Mutualis notifications",
        version=__version__,
        settings=settings,
        readiness={
            "nats": nats_readiness(
                lambda: platform.nc, lambda: platform.js, ["NOTIFICATIONS_EVENTS"]
            )
        },
    )
    app.include_router(
        api_router(deps, TokenVerifier.for_service(settings, "mutualis:notifications"))
    )
    # Pooled SMTP sessions and gateway connections are closed politely at shutdown.
    closers: list[Callable[[], Awaitable[None]]] = [
        sender.aclose
        for sender in (deps.email, deps.sms)
        if isinstance(sender, FailoverEmail | FailoverSms)
    ]
    return Wiring(app=app, consumers=consumers(platform, deps, settings), on_stop=closers)


async def wire(platform: Platform) -> Wiring:
    settings = platform.settings
    assert isinstance(settings, NotificationsSettings)
    return wiring_for(platform, await build_deps(platform, settings), settings)


def main() -> None:
    run(NotificationsSettings(), manifest.MANIFEST, wire)
