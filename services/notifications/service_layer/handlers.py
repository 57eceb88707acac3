"""Use cases: route an event, request a notification, deliver it exactly once, erase a user.

Exactly-once effect (see docs/notifications.md): a notification's ledger entry is created
with KV `create` (one winner per idempotency key, across instances and datacenters); each
attempt is claimed by compare-and-set (`sending`, with a lease), then marked by a second one
when its hand-off begins, just before the channel's point of no return, and settled after. An
entry found still `sending` once its lease has expired is claimed again if its hand-off never
began (nothing was sent); if it began, the relay may have the message, so it is settled
without a second send (at-most-once for that ambiguous attempt; the deterministic Message-ID
lets receivers dedupe if an operator ever resends).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog

from mutualis_kernel.bus.errors import RetryAfter
from mutualis_kernel.bus.publisher import EventPublisher
from mutualis_kernel.events import Envelope, Event, derived_event_id
from mutualis_kernel.metrics import DomainMetrics, NotificationChannel
from mutualis_kernel.tenants import TenantDirectory, UnknownTenant
from notifications.adapters.callbacks import post_status
from notifications.adapters.stores import Conflict, Contact, InboxItem, Stores
from notifications.domain.errors import NotificationError, TemplateNotFound
from notifications.domain.events import (
    NotificationDelivered,
    NotificationFailed,
    NotificationRequested,
    NotificationSent,
)
from notifications.domain.model import (
    Channel,
    Notification,
    RetryPolicy,
    TokenBucket,
    idempotency_key,
    normalise_address,
    notification_id,
    utcnow,
)
from notifications.domain.routing import (
    DEFAULT_ROUTES,
    desk_roles_for,
    effective_rule,
    user_ids_for,
    variables_for,
)
from notifications.domain.templates import DEFAULT_TEMPLATES, Branding, Template, render
from notifications.service_layer.ports import (
    Accepted,
    DeliveryAmbiguous,
    DeliveryError,
    EmailSender,
    HandOff,
    OutgoingEmail,
    OutgoingSms,
    SmsSender,
)

#: Notifications by channel and outcome, for the notifications dashboard and alerts.
METRICS = DomainMetrics()
METRIC_CHANNELS: dict[str, NotificationChannel] = {
    "email": "email",
    "sms": "sms",
    "inapp": "in_app",
}

log = structlog.get_logger("notifications")

#: Waits for a rate-limit token shorter than this happen in place; longer ones go back to
#: JetStream (NAK with delay), so one tenant's backlog does not hold the others' messages.
MAX_INLINE_WAIT_S = 2.0

#: A recipient named by an event but not yet in the contact directory is waited for this long
#: after the event: the directory is a projection of identity's stream, which another
#: service's event (a step assigned to a user registered a moment before) can overtake.
#: Past it, the recipient really is unknown and the notification fails with that reason.
UNKNOWN_CONTACT_GRACE = timedelta(seconds=20)


class RetryLater(RetryAfter):
    """Not now: a temporary failure, a busy rate limit, or another instance's live attempt.

    `delay_s`, when given, is when to look again (the retry policy's backoff, the rate
    limit's exact wait, the rest of a live lease): the kernel's consumer NAKs with it
    (`RetryAfter`); without it, with the consumer's own backoff.
    """


@dataclass
class Deps:
    stores: Stores
    publisher: EventPublisher
    email: EmailSender
    sms: SmsSender
    tenants: TenantDirectory
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    sending_lease: timedelta = timedelta(seconds=60)
    rate_per_s: float = 50.0
    rate_burst: float = 100.0
    dev_mode: bool = False
    callback_timeout_s: float = 5.0
    clock: Callable[[], datetime] = utcnow
    buckets: dict[str, TokenBucket] = field(default_factory=dict)


# -- identity projection -------------------------------------------------------------------
async def project_identity(envelope: Envelope[Event], deps: Deps) -> Contact | None:
    """Keep the contact directory in step with identity's account events; the contact stored."""
    data = envelope.data.model_dump(mode="json")
    name = envelope.data.event_name
    tenant = envelope.tenant
    user_id = data.get("user_id") or envelope.aggregate_id
    stores = deps.stores
    if name == "user.registered":
        contact = Contact(
            user_id=user_id,
            tenant=tenant,
            kind=data.get("kind", "citizen"),
            email=data.get("email"),
            phone=data.get("phone"),
            name=data.get("name"),
            roles=tuple(data.get("roles") or ()),
        )
        await stores.put_contact(contact)
        return contact
    if name in ("user.updated", "role.granted", "role.revoked"):
        known = await stores.contact(tenant, user_id)
        if known is None:
            return None
        changes: dict[str, Any] = {}
        for key in ("email", "phone", "name", "disabled", "roles"):
            if key in data:
                changes[key] = tuple(data[key]) if key == "roles" else data[key]
        contact = known.model_copy(update=changes)
        await stores.put_contact(contact)
        return contact
    if name == "user.erased":
        await erase_user(tenant, user_id, deps)
    return None


async def erase_user(tenant: str, user_id: str, deps: Deps) -> None:
    """GDPR erasure: addresses, phone, preferences, inbox go; anonymous counts stay."""
    stores = deps.stores
    await stores.forget_contact(tenant, user_id)
    await stores.forget_preferences(tenant, user_id)
    purged = await stores.purge_inbox(tenant, user_id)
    scrubbed = 0
    async for notification, revision in stores.notifications(tenant):
        if notification.user_id != user_id:
            continue
        for _ in range(5):
            try:
                await stores.save_notification(notification.scrubbed(deps.clock()), revision)
                scrubbed += 1
                break
            except Conflict:
                loaded = await stores.load_notification(tenant, notification.id)
                if loaded is None:
                    break
                notification, revision = loaded
    log.info("user.erased", tenant=tenant, inbox_items=purged, ledger_entries=scrubbed)


# -- routing -------------------------------------------------------------------------------
async def route_event(envelope: Envelope[Event], deps: Deps) -> None:
    """Any producer's event -> the notifications its routing rule asks for."""
    projected = None
    if envelope.data.service == "identity":
        projected = await project_identity(envelope, deps)
    tenant = envelope.tenant
    rule = effective_rule(envelope.type, DEFAULT_ROUTES, await deps.stores.routes(tenant))
    if rule is None:
        return
    data = envelope.data.model_dump(mode="json")
    variables = variables_for(rule, data, tenant=tenant, aggregate_id=envelope.aggregate_id)
    contacts: dict[str, Contact | None] = {}
    for user_id in user_ids_for(rule, data, aggregate_id=envelope.aggregate_id):
        if projected is not None and projected.user_id == user_id:
            contacts[user_id] = projected  # just written: no need to read it back
        else:
            contacts[user_id] = await deps.stores.contact(tenant, user_id)
    needs_address = any(channel != "inapp" for channel in rule.channels)
    unknown = sorted(user_id for user_id, contact in contacts.items() if contact is None)
    if unknown and needs_address and deps.clock() - envelope.time < UNKNOWN_CONTACT_GRACE:
        # Nothing is requested yet, so the redelivery repeats nothing.
        raise RetryLater(f"recipients not yet in the contact directory: {', '.join(unknown)}")
    if rule.recipients.roles:
        for holder in await deps.stores.contacts_with_roles(tenant, rule.recipients.roles):
            contacts[holder.user_id] = holder
    desk_roles = desk_roles_for(rule, data)
    if desk_roles:
        # A desk is held through identity roles (`desk:<id>`): its holders in this tenant.
        holders = await deps.stores.contacts_with_roles(tenant, desk_roles)
        if not holders:
            log.warning("routing.desk_without_holder", desks=desk_roles, event_type=envelope.type)
        for holder in holders:
            contacts.setdefault(holder.user_id, holder)
    for user_id, contact in contacts.items():
        for channel in rule.channels:
            await request(
                deps,
                tenant=tenant,
                kind=rule.kind,
                category=rule.category,
                channel=channel,
                user_id=user_id,
                contact=contact,
                address=None,
                variables=variables,
                critical=rule.critical,
                cause_id=envelope.id,
                strict=False,
            )


async def template_for(deps: Deps, tenant: str, kind: str) -> Template:
    template = await deps.stores.template(tenant, kind) or DEFAULT_TEMPLATES.get(kind)
    if template is None:
        raise TemplateNotFound(f"no template {kind!r} for {tenant}")
    return template


async def branding_for(deps: Deps, tenant: str) -> Branding:
    config = await deps.stores.tenant_config(tenant)
    try:
        name = deps.tenants.get(tenant).name
    except UnknownTenant:
        name = tenant
    return Branding(
        name=name,
        logo_url=config.logo_url,
        color=config.color or "#1f4e79",
        signature=config.signature or "",
    )


async def request(
    deps: Deps,
    *,
    tenant: str,
    kind: str,
    category: str,
    channel: Channel,
    user_id: str | None,
    contact: Contact | None,
    address: str | None,
    variables: dict[str, Any],
    critical: bool,
    cause_id: str,
    strict: bool,
) -> Notification:
    """Record one notification and ask for its delivery; idempotent per (cause, recipient, channel).

    `strict` (API calls): bad input raises `NotificationError` for a 4xx. Otherwise (events)
    bad input becomes a permanent-failure record with the reason: a consumer never crashes on
    a template or an address.
    """
    now = deps.clock()
    recipient = user_id or address or "?"
    nid = notification_id(idempotency_key(cause_id, f"{tenant}/{recipient}", channel))
    # No read before the create: the first time (by far the common case) costs one KV round
    # trip, and a repeat is told apart by the create's refusal.
    notification = Notification(
        id=nid,
        tenant=tenant,
        kind=kind,
        category=category,
        channel=channel,
        user_id=user_id,
        critical=critical,
        cause_id=cause_id,
        created_at=now,
        updated_at=now,
        message_id=f"<{nid}@notifications.mutualis>",
    )
    refusal: str | None = None
    try:
        target = address or _address_of(contact, channel)
        if target is None:
            refusal = f"no {channel} address known for this recipient"
        else:
            target = normalise_address(channel, target)
            config = await deps.stores.tenant_config(tenant)
            if config.sandbox and channel != "inapp":
                # Every outside channel goes to the tenant's test address, never to the real
                # one; without a test address for the channel, nothing goes at all.
                target = config.sandbox_address(channel)
                if target is None:
                    refusal = f"sandbox mode without a test address for {channel}: not sent"
            if target is not None:
                notification = notification.model_copy(update={"address": target})
        recipient_view = {"name": contact.name if contact else None}
        content = render(
            await template_for(deps, tenant, kind),
            variables,
            branding=await branding_for(deps, tenant),
            recipient=recipient_view,
        )
        notification = notification.model_copy(update={"content": content})
    except NotificationError as error:
        if strict:
            raise
        refusal = error.reason
    if refusal is None and user_id is not None:
        prefs = await deps.stores.preferences_of(tenant, user_id)
        if not prefs.allows(category, channel, critical=critical):
            refusal = f"opted out of {category} by {channel}"
    if contact is not None and contact.disabled and not critical:
        refusal = "account disabled"
    if refusal is not None:
        notification = notification.refused(now, refusal)
    if not await deps.stores.create_notification(notification):
        # Seen before (a redelivered event, a repeated API call, another instance).
        existing = await deps.stores.load_notification(tenant, nid)
        if existing is None:
            return notification
        if existing[0].status == "created":
            # The first handling may have stopped before asking for delivery.
            await _publish_requested(deps, existing[0])
        return existing[0]
    if refusal is not None:
        await _publish_failed(deps, notification, refusal, attempt=0)
        await deps.stores.count(tenant, channel, notification.status)
        return notification
    await _publish_requested(deps, notification)
    return notification


def _address_of(contact: Contact | None, channel: Channel) -> str | None:
    if contact is None:
        return None
    if channel == "email":
        return contact.email
    if channel == "sms":
        return contact.phone
    return contact.user_id


# -- delivery ------------------------------------------------------------------------------
class HandOffLost(Exception):
    """The ledger entry moved between the claim and the hand-off: another instance took the
    attempt over (its lease had expired), so this one must send nothing."""


@dataclass
class _Attempt:
    """One claimed attempt while it runs: the entry as last written, and its revision."""

    deps: Deps
    notification: Notification
    revision: int
    cause: Envelope[Event]
    sent: asyncio.Future[Any] | None = None

    async def hand_off(self, provider: str) -> None:
        """The channel's last step before its point of no return: record that it began.

        A crash before this leaves a claim that a later delivery safely makes again; after
        it, the outcome is ambiguous. The `notification.sent` event is stored meanwhile,
        overlapped with the relay's dialogue, and awaited before the attempt settles.
        """
        if self.notification.hand_off_began:
            return  # a failover to the next gateway: the hand-off already began
        begun = self.notification.begin_hand_off(self.deps.clock(), provider)
        try:
            self.revision = await self.deps.stores.save_notification(begun, self.revision)
        except Conflict:
            raise HandOffLost("another instance took this attempt over") from None
        self.notification = begun
        attempt = begun.attempt_count
        self.sent = asyncio.ensure_future(
            self.deps.publisher.publish(
                NotificationSent(
                    notification_id=begun.id,
                    channel=begun.channel,
                    attempt=attempt,
                    provider=provider,
                ),
                tenant=begun.tenant,
                aggregate_id=begun.id,
                event_id=derived_event_id(begun.id, f"sent-{attempt}"),
                cause=self.cause,
            )
        )

    async def reported_sent(self) -> None:
        if self.sent is not None:
            await self.sent


async def deliver(envelope: Envelope[Event], deps: Deps) -> None:
    """Deliver one requested notification: at most one hand-off per attempt, settled after."""
    requested = envelope.data
    assert isinstance(requested, NotificationRequested)
    tenant = envelope.tenant
    loaded = await deps.stores.load_notification(tenant, requested.notification_id)
    if loaded is None:
        log.warning("delivery.unknown_notification", notification_id=requested.notification_id)
        return
    notification, revision = loaded
    now = deps.clock()
    if notification.is_terminal:
        return
    if notification.status == "sending":
        if not notification.lease_expired(now):
            assert notification.sending_until is not None
            wait = (notification.sending_until - now).total_seconds()
            raise RetryLater("another attempt is in flight", delay_s=wait + 0.5)
        if not notification.can_be_reclaimed(now):
            # Interrupted between the hand-off and its settlement: we cannot know whether
            # the relay accepted it, and sending again could make two. Settle, no resend.
            reason = (
                "unconfirmed: interrupted during the hand-off; not sent again (at-most-once "
                f"for an ambiguous attempt, Message-ID {notification.message_id})"
            )
            await _settle_failure(deps, notification, revision, reason, permanent=True)
            return
        # Claimed, but the instance stopped before the hand-off began (or an inbox write,
        # which is idempotent): nothing can have been sent twice, so claim it again.
        log.info("delivery.reclaimed", notification_id=notification.id)
    await _take_token(deps, tenant)
    claimed = notification.start_sending(deps.clock(), deps.sending_lease, notification.channel)
    try:
        revision = await deps.stores.save_notification(claimed, revision)
    except Conflict:
        raise RetryLater("another instance claimed this attempt") from None
    running = _Attempt(deps, claimed, revision, envelope)
    try:
        accepted = await _hand_off(deps, claimed, running.hand_off)
    except HandOffLost as error:
        raise RetryLater(str(error)) from None
    except DeliveryError as error:
        await _settle_attempt_failure(deps, running, error)
        return
    except Exception:
        # Not the channel's answer (the ledger or the inbox could not be written): the entry
        # stays claimed or handing off, and a later delivery resolves it as above.
        if running.sent is not None:
            await asyncio.gather(running.sent, return_exceptions=True)
        raise
    await running.reported_sent()
    attempt = running.notification.attempt_count
    done = running.notification.delivered(deps.clock(), accepted.provider, accepted.message_id)
    await deps.stores.save_notification(done, running.revision)
    # Settled: what follows only reports it, and none of it depends on the rest.
    await asyncio.gather(
        deps.publisher.publish(
            NotificationDelivered(
                notification_id=done.id,
                channel=done.channel,
                attempt=attempt,
                provider=accepted.provider,
                message_id=accepted.message_id,
            ),
            tenant=tenant,
            aggregate_id=done.id,
            event_id=derived_event_id(done.id, "delivered"),
        ),
        deps.stores.count(tenant, done.channel, done.status),
        _callback(deps, done),
    )
    METRICS.notification(tenant, METRIC_CHANNELS[done.channel], "delivered")


async def _settle_attempt_failure(deps: Deps, running: _Attempt, error: DeliveryError) -> None:
    await running.reported_sent()
    attempt = running.notification.attempt_count
    gives_up = error.permanent or deps.retry.gives_up_after(attempt)
    reason = error.reason
    if isinstance(error, DeliveryAmbiguous):
        reason = f"unconfirmed: {reason}; not sent again (at-most-once)"
    await _settle_failure(deps, running.notification, running.revision, reason, permanent=gives_up)
    if not gives_up:
        # Spaced by the retry policy (`MUTUALIS_RETRY_*`), not by the consumer's backoff.
        raise RetryLater(error.reason, delay_s=deps.retry.delay_after(attempt))


async def _take_token(deps: Deps, tenant: str) -> None:
    bucket = deps.buckets.get(tenant)
    if bucket is None:
        config = await deps.stores.tenant_config(tenant)
        bucket = TokenBucket(
            rate_per_s=config.rate_per_s or deps.rate_per_s,
            capacity=config.rate_burst or deps.rate_burst,
        )
        deps.buckets[tenant] = bucket
    while True:
        wait = bucket.take(time.monotonic())
        if wait == 0:
            return
        if wait > MAX_INLINE_WAIT_S:
            raise RetryLater(f"tenant {tenant} over its rate limit", delay_s=wait)
        await asyncio.sleep(wait)


async def _hand_off(deps: Deps, notification: Notification, hand_off: HandOff) -> Accepted:
    content = notification.content
    assert notification.address is not None
    if notification.channel == "email":
        return await deps.email.send(
            OutgoingEmail(
                to=notification.address,
                subject=content.subject,
                text=content.text,
                html=content.html,
                message_id=notification.message_id or f"<{notification.id}@notifications.mutualis>",
                headers={
                    "X-Mutualis-Tenant": notification.tenant,
                    "X-Mutualis-Notification": notification.id,
                    "X-Mutualis-Kind": notification.kind,
                },
            ),
            hand_off,
        )
    if notification.channel == "sms":
        return await deps.sms.send(
            OutgoingSms(
                to=notification.address,
                text=content.sms,
                reference=notification.id,
                tenant=notification.tenant,
            ),
            hand_off,
        )
    assert notification.user_id is not None
    await hand_off("inbox")
    # Created, never overwritten: an interrupted hand-off made again finds the item there
    # (perhaps already read) and leaves it as it is.
    await deps.stores.add_inbox_item(
        notification.tenant,
        notification.user_id,
        InboxItem(
            id=notification.id,
            kind=notification.kind,
            category=notification.category,
            title=content.subject,
            body=content.text,
            created_at=notification.created_at,
        ),
    )
    return Accepted(provider="inbox", message_id=notification.id)


async def _settle_failure(
    deps: Deps, notification: Notification, revision: int, reason: str, *, permanent: bool
) -> None:
    failed = notification.failed(deps.clock(), reason, permanent=permanent)
    try:
        await deps.stores.save_notification(failed, revision)
    except Conflict:
        raise RetryLater("ledger entry changed while settling") from None
    await _publish_failed(deps, failed, reason, attempt=failed.attempt_count)
    if permanent:
        await deps.stores.count(failed.tenant, failed.channel, failed.status)
        await _callback(deps, failed)


async def _publish_requested(deps: Deps, notification: Notification) -> None:
    await deps.publisher.publish(
        NotificationRequested(
            notification_id=notification.id,
            kind=notification.kind,
            category=notification.category,
            channel=notification.channel,
            user_id=notification.user_id,
            critical=notification.critical,
            cause_id=notification.cause_id,
        ),
        tenant=notification.tenant,
        aggregate_id=notification.id,
        event_id=derived_event_id(notification.id, "requested"),
    )


async def _publish_failed(
    deps: Deps, notification: Notification, reason: str, *, attempt: int
) -> None:
    METRICS.notification(notification.tenant, METRIC_CHANNELS[notification.channel], "failed")
    await deps.publisher.publish(
        NotificationFailed(
            notification_id=notification.id,
            channel=notification.channel,
            attempt=attempt,
            permanent=notification.status == "permanent-failure",
            reason=reason[:500],
        ),
        tenant=notification.tenant,
        aggregate_id=notification.id,
        event_id=derived_event_id(notification.id, f"failed-{attempt}"),
    )


async def _callback(deps: Deps, notification: Notification) -> None:
    config = await deps.stores.tenant_config(notification.tenant)
    if not config.callback_url or not config.callback_secret:
        return
    await post_status(
        config.callback_url,
        config.callback_secret,
        {
            "notification_id": notification.id,
            "status": notification.status,
            "channel": notification.channel,
            "kind": notification.kind,
            "reason": notification.reason,
        },
        deps.callback_timeout_s,
    )
