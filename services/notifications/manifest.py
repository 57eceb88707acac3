"""What the notifications service declares: streams, KV buckets and consumers (no I/O here)."""

from __future__ import annotations

from mutualis_kernel.bus.spec import ConsumerSpec
from mutualis_kernel.service import ServiceManifest
from mutualis_kernel.streams import KeyValueSpec, Resources, events_stream

LEDGER = "notifications_ledger"
DIRECTORY = "notifications_directory"
PREFERENCES = "notifications_preferences"
TEMPLATES = "notifications_templates"
INBOX = "notifications_inbox"
TENANT_CONFIG = "notifications_tenants"
STATS = "notifications_stats"

RESOURCES = Resources(
    streams=(
        events_stream(
            "notifications",
            "Notifications requested, sent, delivered and failed (no personal data).",
        ),
    ),
    key_values=(
        KeyValueSpec(LEDGER, "Delivery ledger: one entry per idempotency key, with its status."),
        KeyValueSpec(DIRECTORY, "Users' contact data projected from identity's events."),
        KeyValueSpec(PREFERENCES, "Per-user opt-outs by category and channel."),
        KeyValueSpec(TEMPLATES, "Per-tenant templates and routing rules.", history=10),
        KeyValueSpec(INBOX, "In-app inbox items per tenant and user."),
        KeyValueSpec(TENANT_CONFIG, "Per-tenant sandbox, callback URL and rate limit.", history=5),
        KeyValueSpec(STATS, "Anonymous delivery counts per tenant, channel and status."),
    ),
)

ROUTER = ConsumerSpec(
    durable="notifications-router",
    stream="PARAPHEUR_EVENTS",
    filter_subjects=("evt.parapheur.>",),
    service="notifications",
    description="Turns parapheur events into notifications through the routing rules.",
)
IDENTITY_ROUTER = ConsumerSpec(
    durable="notifications-identity",
    stream="IDENTITY_EVENTS",
    filter_subjects=("evt.identity.>",),
    service="notifications",
    description="Keeps the contact directory and routes identity events (welcome, security).",
)
ARCHIVE_ROUTER = ConsumerSpec(
    durable="notifications-archive",
    stream="ARCHIVE_EVENTS",
    filter_subjects=("evt.archive.>",),
    service="notifications",
    description="Routes archive events (integrity failures) to the tenant's archivists.",
)
DELIVERIES = ConsumerSpec(
    durable="notifications-deliveries",
    stream="NOTIFICATIONS_EVENTS",
    filter_subjects=("evt.notifications.*.notification.*.notification.requested",),
    service="notifications",
    description="Delivers each requested notification once, with retries and failover.",
    # Attempts are counted and bounded by the ledger's retry policy; redeliveries of the
    # request also carry rate-limit delays, so they must not run out first.
    max_deliver=1000,
    backoff_s=(1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0),
    batch=32,
    # A delivery mostly waits on an SMTP relay or SMS gateway: several at once, so one slow
    # relay or one tenant held by its rate limit does not hold up every other notification.
    concurrency=8,
)

MANIFEST = ServiceManifest(
    name="notifications",
    description="Email, SMS and in-app notifications with evidence of delivery.",
    default_port=8004,
    resources=RESOURCES,
    consumers=(ROUTER, IDENTITY_ROUTER, ARCHIVE_ROUTER, DELIVERIES),
    event_modules=("notifications.domain.events",),
)
