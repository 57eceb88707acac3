"""Delivery end to end: producer events on a real 3-DC cluster -> real SMTP servers (aiosmtpd)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import structlog
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from identity.domain.events import RefreshReused, UserErased, UserRegistered
from mutualis_kernel.bus.publisher import EventPublisher
from mutualis_kernel.events import Event
from mutualis_kernel.metrics import SMTP_ATTEMPTS, DomainMetrics
from mutualis_kernel.runtime import LocalCluster
from notifications.adapters.stores import TenantConfig
from notifications.domain.model import Preferences
from notifications.service_layer.ports import Accepted, EmailSender, HandOff, OutgoingEmail
from parapheur.domain.events import StepAssigned

from .conftest import (
    eventually,
    ledger,
    mails,
    running_service,
    self_signed,
    settings_for,
    settled_entries,
    smtp_sink,
)

TENANT = "merignac"


async def publish(run_platform_publisher: EventPublisher, event: Event, aggregate_id: str) -> None:
    await run_platform_publisher.publish(event, tenant=TENANT, aggregate_id=aggregate_id)


def producer(run: object, service: str) -> EventPublisher:
    platform = run.platform  # type: ignore[attr-defined]
    return EventPublisher(platform.js, source_service=service)


async def register(run: object, user_id: str, email: str, roles: tuple[str, ...] = ()) -> None:
    await producer(run, "identity").publish(
        UserRegistered(
            user_id=user_id, tenant=TENANT, kind="agent", roles=roles, email=email, name="Marie"
        ),
        tenant=TENANT,
        aggregate_id=user_id,
    )


async def assign(run: object, folder_id: str, users: tuple[str, ...]) -> None:
    await producer(run, "parapheur").publish(
        StepAssigned(step=1, kind="signature", mode="any", users=users),
        tenant=TENANT,
        aggregate_id=folder_id,
    )


def to(directory: Path, address: str) -> list[dict[str, object]]:
    return [m for m in mails(directory) if address in m["to"]]  # type: ignore[operator]


async def test_an_assigned_step_emails_the_actor_with_the_right_template_and_fills_the_inbox(
    fresh_cluster: LocalCluster, tmp_path: Path
) -> None:
    async with smtp_sink(tmp_path) as sink:
        settings = settings_for(fresh_cluster, smtp_port=sink.port)
        async with running_service(settings) as run:
            await register(run, "u-marie", "marie@merignac.fr")
            await eventually(lambda: run.deps.stores.contact(TENANT, "u-marie"), what="contact")
            await assign(run, "f-1", ("u-marie",))
            # The welcome mail and the step mail.
            got = await eventually(
                lambda: asyncio.sleep(0, len(to(tmp_path, "marie@merignac.fr")) == 2),
                what="two mails",
            )
            got = to(tmp_path, "marie@merignac.fr")
            subjects = sorted(m["subject"] for m in got)
            assert "Un dossier attend votre action" in subjects
            step = next(m for m in got if m["subject"] == "Un dossier attend votre action")
            assert "f-1" in step["text"]
            assert "Mérignac" in step["text"]
            assert step["html"]
            assert "Mérignac" in step["html"]
            items = await eventually(
                lambda: run.deps.stores.inbox_items(TENANT, "u-marie"), what="inbox item"
            )
            assert items[0].title == "Un dossier attend votre action"


async def test_a_step_assigned_before_identity_registration_lands_still_reaches_the_actor(
    fresh_cluster: LocalCluster, tmp_path: Path
) -> None:
    # The step event overtakes the registration (two streams, two consumers): the router waits
    # for the contact directory instead of failing the email for want of an address.
    async with smtp_sink(tmp_path) as sink:
        settings = settings_for(fresh_cluster, smtp_port=sink.port)
        async with running_service(settings) as run:
            await assign(run, "f-early", ("u-late",))

            async def step_sent_back() -> bool:
                info = await run.platform.js.consumer_info(
                    "PARAPHEUR_EVENTS", "notifications-router"
                )
                return info.num_redelivered >= 1

            await eventually(step_sent_back, what="the step event redelivered")
            await register(run, "u-late", "late@merignac.fr")
            await eventually(
                lambda: asyncio.sleep(0, len(to(tmp_path, "late@merignac.fr")) == 2),
                what="welcome and step mails",
            )
            subjects = sorted(m["subject"] for m in to(tmp_path, "late@merignac.fr"))
            assert "Un dossier attend votre action" in subjects


async def test_starttls_is_required_and_used(fresh_cluster: LocalCluster, tmp_path: Path) -> None:
    context, cert = self_signed(tmp_path)
    async with smtp_sink(tmp_path / "tls", tls_context=context, require_starttls=True) as sink:
        settings = settings_for(
            fresh_cluster, smtp_port=sink.port, smtp_starttls=True, smtp_ca_file=str(cert)
        )
        async with running_service(settings) as run:
            await register(run, "u-tls", "tls@merignac.fr")
            got = await eventually(
                lambda: asyncio.sleep(0, to(tmp_path / "tls", "tls@merignac.fr")), what="mail"
            )
            assert got[0]["tls"] is True


async def test_a_4xx_is_retried_then_delivered_and_a_5xx_fails_permanently(
    fresh_cluster: LocalCluster, tmp_path: Path
) -> None:
    async with smtp_sink(tmp_path) as sink:
        sink.forced_replies = ["451 4.3.0 try again later"]
        settings = settings_for(fresh_cluster, smtp_port=sink.port)
        async with running_service(settings) as run:
            await register(run, "u-retry", "retry@merignac.fr")
            await eventually(
                lambda: asyncio.sleep(0, to(tmp_path, "retry@merignac.fr")), what="retried mail"
            )
            ledger = [n async for n, _ in run.deps.stores.notifications(TENANT)]
            welcome = next(n for n in ledger if n.user_id == "u-retry")
            assert welcome.status == "delivered"
            assert welcome.attempt_count == 2

            sink.forced_replies = ["550 5.1.1 no such mailbox"]
            await register(run, "u-gone", "gone@merignac.fr")

            async def failed() -> bool:
                entries = [n async for n, _ in run.deps.stores.notifications(TENANT)]
                return any(
                    n.user_id == "u-gone" and n.status == "permanent-failure" for n in entries
                )

            await eventually(failed, what="permanent failure")
            assert not to(tmp_path, "gone@merignac.fr")


def smtp_attempts(reader: InMemoryMetricReader) -> dict[tuple[str, str], int]:
    """`mutualis.smtp.attempts` as (relay role, outcome) -> count."""
    found: dict[tuple[str, str], int] = {}
    data = reader.get_metrics_data()
    assert data is not None
    for resource_metrics in data.resource_metrics:
        for scope in resource_metrics.scope_metrics:
            for metric in scope.metrics:
                if metric.name != SMTP_ATTEMPTS:
                    continue
                for point in metric.data.data_points:
                    attributes = point.attributes or {}
                    assert attributes["server.address"] == "127.0.0.1"
                    role = str(attributes["smtp.relay.role"])
                    found[(role, str(attributes["outcome"]))] = int(point.value)  # type: ignore[union-attr]
    return found


async def test_the_secondary_relay_takes_over_when_the_primary_is_down_and_it_is_counted(
    fresh_cluster: LocalCluster, tmp_path: Path
) -> None:
    from mutualis_kernel.testing.ports import free_port_block

    reader = InMemoryMetricReader()
    metrics = DomainMetrics(MeterProvider(metric_readers=[reader]).get_meter("test"))
    async with smtp_sink(tmp_path) as secondary:
        settings = settings_for(
            fresh_cluster,
            smtp_port=free_port_block(1),  # nothing listens there
            smtp_secondary_host="127.0.0.1",
            smtp_secondary_port=secondary.port,
        )
        async with running_service(settings, metrics=metrics) as run:
            await register(run, "u-fo", "fo@merignac.fr")
            await eventually(lambda: asyncio.sleep(0, to(tmp_path, "fo@merignac.fr")), what="mail")
            entries = await eventually(lambda: settled_entries(run, TENANT, 1), what="settled")
            assert entries[0].provider == "smtp-secondary"
    # What the SmtpRelayFailingOver alert watches: the primary failed, the fallback took it.
    assert smtp_attempts(reader) == {("primary", "failed"): 1, ("fallback", "ok"): 1}


async def test_a_relay_lost_after_data_is_neither_retried_nor_bypassed(
    fresh_cluster: LocalCluster, tmp_path: Path
) -> None:
    # The primary stores the mail, then the connection breaks before its final reply: the
    # mail may well be queued there, so asking the secondary (or the primary again) could
    # make two. The attempt is settled as unconfirmed instead.
    async with (
        smtp_sink(tmp_path / "primary") as primary,
        smtp_sink(tmp_path / "secondary") as secondary,
    ):
        primary.drop_after_data = 1
        settings = settings_for(
            fresh_cluster,
            smtp_port=primary.port,
            smtp_secondary_host="127.0.0.1",
            smtp_secondary_port=secondary.port,
        )
        async with running_service(settings) as run:
            await register(run, "u-lost", "lost@merignac.fr")
            [entry] = await eventually(lambda: settled_entries(run, TENANT, 1), what="settled")
        assert entry.status == "permanent-failure"
        assert entry.reason.startswith("unconfirmed: smtp-primary"), entry.reason
        assert "after DATA" in entry.reason
        assert entry.attempt_count == 1
        assert len(to(tmp_path / "primary", "lost@merignac.fr")) == 1
        assert not mails(tmp_path / "secondary")


class HangsAfterHandOff:
    """Hands the mail to the real relay, then never returns: the process 'dies' right there."""

    def __init__(self, inner: EmailSender) -> None:
        self.inner = inner

    async def send(self, email: OutgoingEmail, hand_off: HandOff) -> Accepted:
        await self.inner.send(email, hand_off)
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


class StopsBeforeHandOff:
    """The attempt is claimed, then the process 'dies' before the relay is reached."""

    def __init__(self, inner: EmailSender) -> None:
        self.inner = inner
        self.reached = asyncio.Event()

    async def send(self, email: OutgoingEmail, hand_off: HandOff) -> Accepted:
        self.reached.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def test_killed_after_the_claim_before_the_hand_off_another_instance_sends_it_once(
    fresh_cluster: LocalCluster, tmp_path: Path
) -> None:
    async with smtp_sink(tmp_path) as sink:
        settings = settings_for(
            fresh_cluster, smtp_port=sink.port, sending_lease_s=1.0, delivery_ack_wait_s=3.0
        )
        stuck: list[StopsBeforeHandOff] = []

        def stopping(inner: EmailSender) -> EmailSender:
            stuck.append(StopsBeforeHandOff(inner))
            return stuck[0]

        async with running_service(settings, wrap_email=stopping) as first:
            await register(first, "u-claimed", "claimed@merignac.fr")
            await asyncio.wait_for(stuck[0].reached.wait(), 30)
            [claimed] = await ledger(first, TENANT)
            assert claimed.status == "sending"
            assert claimed.handing_off_since is None
            # Killed: consumers cancelled, the claim left as it is, the request never acked.
            for task in first.tasks:
                task.cancel()
        assert not to(tmp_path, "claimed@merignac.fr")
        async with running_service(settings) as second:
            [entry] = await eventually(lambda: settled_entries(second, TENANT, 1), what="settled")
        assert entry.status == "delivered"
        # The abandoned claim does not count: the one real attempt is the first.
        assert [a.outcome for a in entry.attempts] == ["abandoned", "delivered"]
        assert entry.attempt_count == 1
        assert len(to(tmp_path, "claimed@merignac.fr")) == 1


async def test_killed_between_sending_and_delivered_gives_exactly_one_email_after_restart(
    fresh_cluster: LocalCluster, tmp_path: Path
) -> None:
    async with smtp_sink(tmp_path) as sink:
        settings = settings_for(
            fresh_cluster, smtp_port=sink.port, sending_lease_s=1.0, delivery_ack_wait_s=3.0
        )
        async with running_service(settings, wrap_email=HangsAfterHandOff) as first:
            await register(first, "u-once", "once@merignac.fr")
            await eventually(lambda: asyncio.sleep(0, to(tmp_path, "once@merignac.fr")))
            # Killed: consumers cancelled mid-send, nothing settled, the request never acked.
            for task in first.tasks:
                task.cancel()
        async with running_service(settings) as second:

            async def settled() -> bool:
                entries = [n async for n, _ in second.deps.stores.notifications(TENANT)]
                return bool(entries) and all(n.is_terminal for n in entries)

            await eventually(settled, what="ambiguous attempt settled")
            entries = [n async for n, _ in second.deps.stores.notifications(TENANT)]
            assert entries[0].reason.startswith("unconfirmed")
        assert len(to(tmp_path, "once@merignac.fr")) == 1


async def test_temporary_failures_are_retried_on_the_retry_policy_schedule(
    fresh_cluster: LocalCluster, tmp_path: Path
) -> None:
    async with smtp_sink(tmp_path) as sink:
        sink.forced_replies = ["451 4.3.0 try again later"] * 3
        settings = settings_for(
            fresh_cluster, smtp_port=sink.port, retry_first_delay_s=0.3, retry_max_delay_s=0.5
        )
        async with running_service(settings) as run:
            # Started before the capture: starting configures logging, which would end it.
            with structlog.testing.capture_logs() as logs:
                await register(run, "u-paced", "paced@merignac.fr")
                [entry] = await eventually(lambda: settled_entries(run, TENANT, 1), what="mail")
        assert entry.status == "delivered"
        assert entry.attempt_count == 4
        # The delays the delivery consumer NAKed with: the policy's 0.3 s, doubled, capped
        # at 0.5 s (the consumer's own backoff would have been 1, 2, 4 s).
        delays = [
            log["delay_s"]
            for log in logs
            if log["event"] == "consumer.retry_later"
            and log.get("consumer") == "notifications-deliveries"
        ]
        assert delays == [0.3, 0.5, 0.5]


async def test_opt_out_is_respected_and_critical_messages_override_it(
    fresh_cluster: LocalCluster, tmp_path: Path
) -> None:
    async with smtp_sink(tmp_path) as sink:
        settings = settings_for(fresh_cluster, smtp_port=sink.port)
        async with running_service(settings) as run:
            stores = run.deps.stores
            await stores.save_preferences(
                TENANT, "u-quiet", Preferences(opted_out={"*": ("email", "inapp")})
            )
            await register(run, "u-quiet", "quiet@merignac.fr")
            await assign(run, "f-2", ("u-quiet",))
            await producer(run, "identity").publish(
                RefreshReused(user_id="u-quiet", tenant=TENANT, client_id="c", family_id="fam"),
                tenant=TENANT,
                aggregate_id="u-quiet",
            )
            got = await eventually(
                lambda: asyncio.sleep(0, to(tmp_path, "quiet@merignac.fr")), what="critical"
            )

            async def all_settled() -> list[object]:
                entries = [n async for n, _ in stores.notifications(TENANT)]
                return entries if len(entries) == 5 and all(n.is_terminal for n in entries) else []

            entries = await eventually(all_settled, what="every notification settled")
            assert [m["subject"] for m in got] == ["Alerte de sécurité sur votre compte"]
            refused = [n for n in entries if n.status == "permanent-failure"]  # type: ignore[attr-defined]
            assert len(refused) == 3  # welcome email, step email, step in-app
            assert all("opted out" in n.reason for n in refused)  # type: ignore[attr-defined]


async def test_a_tenant_over_its_rate_limit_is_delayed_but_everything_is_delivered(
    fresh_cluster: LocalCluster, tmp_path: Path
) -> None:
    async with smtp_sink(tmp_path) as sink:
        settings = settings_for(fresh_cluster, smtp_port=sink.port)
        async with running_service(settings) as run:
            await run.deps.stores.save_tenant_config(
                TENANT, TenantConfig(rate_per_s=4, rate_burst=1)
            )
            for n in range(12):
                await register(run, f"u-{n}", f"user{n}@merignac.fr")

            async def all_mail() -> bool:
                return len(mails(tmp_path)) == 12

            await eventually(all_mail, timeout=60, what="12 mails")
            times = sorted(m["received_at"] for m in mails(tmp_path))
            assert times[-1] - times[0] >= 11 / 4 * 0.8  # paced by the bucket, none dropped


async def test_erasure_purges_contact_preferences_inbox_and_keeps_anonymous_counts(
    fresh_cluster: LocalCluster, tmp_path: Path
) -> None:
    async with smtp_sink(tmp_path) as sink:
        settings = settings_for(fresh_cluster, smtp_port=sink.port)
        async with running_service(settings) as run:
            stores = run.deps.stores
            await register(run, "u-erase", "erase@merignac.fr")
            await stores.save_preferences(TENANT, "u-erase", Preferences(opted_out={}))
            await assign(run, "f-3", ("u-erase",))
            await eventually(lambda: stores.inbox_items(TENANT, "u-erase"), what="inbox")
            await eventually(lambda: stores.statistics(TENANT), what="stats")
            await producer(run, "identity").publish(
                UserErased(user_id="u-erase", tenant=TENANT, kind="agent"),
                tenant=TENANT,
                aggregate_id="u-erase",
            )

            async def erased() -> bool:
                # The purge runs contact, preferences, inbox in turn: wait for the last one.
                return (
                    await stores.contact(TENANT, "u-erase") is None
                    and await stores.inbox_items(TENANT, "u-erase") == []
                )

            await eventually(erased, what="contact and inbox purged")
            entries = [n async for n, _ in stores.notifications(TENANT)]
            assert entries
            assert all(n.address is None and n.user_id is None for n in entries)
            assert (await stores.statistics(TENANT)).get("email.delivered", 0) >= 1
