"""The territory's default routes, end to end: producer events on a real 3-DC cluster ->
recipients resolved from the contact directory (identity's data) -> real SMTP sink and inbox.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from archive.domain.events import IntegrityFailed
from identity.domain.events import UserRegistered
from mutualis_kernel.bus.publisher import EventPublisher
from mutualis_kernel.events import Event
from mutualis_kernel.runtime import LocalCluster
from notifications.domain.events import (
    NotificationDelivered,
    NotificationFailed,
    NotificationRequested,
    NotificationSent,
)
from parapheur.domain.events import FolderOverdue, ReminderDue, StepAssigned

from .conftest import (
    Running,
    eventually,
    ledger,
    mails,
    running_service,
    settings_for,
    settled_entries,
    smtp_sink,
    status_events,
)

TENANT, OTHER = "merignac", "pessac"
STEP = "Un dossier attend votre action"
REMINDER = "Rappel : un dossier arrive à échéance"
OVERDUE = "Dossier en retard"
INTEGRITY = "Archives : contrôle d'intégrité en échec"


async def emit(run: Running, service: str, event: Event, aggregate_id: str, tenant: str) -> None:
    publisher = EventPublisher(run.platform.js, source_service=service)
    await publisher.publish(event, tenant=tenant, aggregate_id=aggregate_id)


async def register(
    run: Running, user_id: str, roles: tuple[str, ...], tenant: str = TENANT
) -> None:
    event = UserRegistered(
        user_id=user_id, tenant=tenant, kind="agent", roles=roles, email=f"{user_id}@{tenant}.fr"
    )
    await emit(run, "identity", event, user_id, tenant)


def subjects_by_recipient(directory: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for mail in mails(directory):
        for address in mail["to"]:
            found.setdefault(address, []).append(mail["subject"])
    return found


async def received(directory: Path, subject: str, count: int) -> list[str]:
    """The recipients of `subject`, once `count` mails with it arrived (else empty: poll)."""
    await asyncio.sleep(0)
    by_recipient = subjects_by_recipient(directory)
    who = sorted(address for address, subjects in by_recipient.items() if subject in subjects)
    return who if len(who) >= count else []


async def directory_has(run: Running, *users: tuple[str, str]) -> bool:
    return all([await run.deps.stores.contact(tenant, user) for tenant, user in users])


async def test_a_step_assigned_to_a_desk_reaches_every_agent_holding_it_in_the_tenant(
    fresh_cluster: LocalCluster, tmp_path: Path
) -> None:
    async with (
        smtp_sink(tmp_path) as sink,
        running_service(settings_for(fresh_cluster, smtp_port=sink.port)) as run,
    ):
        await register(run, "u-sec1", ("agent", "desk:secretariat"))
        await register(run, "u-sec2", ("agent", "desk:secretariat", "desk:finances"))
        await register(run, "u-fin", ("agent", "desk:finances"))
        await register(run, "u-plain", ("agent",))
        # The same desk name in another commune is another desk.
        await register(run, "u-sec-pessac", ("agent", "desk:secretariat"), tenant=OTHER)
        await eventually(
            lambda: directory_has(
                run, *((TENANT, u) for u in ("u-sec1", "u-sec2", "u-fin", "u-plain"))
            ),
            what="contacts",
        )
        await eventually(lambda: directory_has(run, (OTHER, "u-sec-pessac")), what="contact")
        await emit(
            run,
            "parapheur",
            StepAssigned(step=1, kind="visa", mode="any", desks=("secretariat",)),
            "f-desk",
            TENANT,
        )
        who = await eventually(lambda: received(tmp_path, STEP, 2), what="step mails")
        assert who == ["u-sec1@merignac.fr", "u-sec2@merignac.fr"]
        inbox = await eventually(
            lambda: run.deps.stores.inbox_items(TENANT, "u-sec2"), what="inbox item"
        )
        assert "f-desk" in inbox[0].body
        # Every routed notification is settled; nobody else was asked to act.
        entries = await eventually(
            lambda: settled_entries(run, TENANT, 4 + 4), what="welcome and step settled"
        )
        step_recipients = sorted(n.user_id for n in entries if n.kind == "parapheur.step.assigned")
        assert step_recipients == ["u-sec1", "u-sec1", "u-sec2", "u-sec2"]  # email + inapp
        assert [n for n in await ledger(run, OTHER) if n.kind != "identity.welcome"] == []


async def test_reminders_and_overdue_folders_reach_the_waiting_users_and_desks(
    fresh_cluster: LocalCluster, tmp_path: Path
) -> None:
    due = datetime(2026, 12, 24, 12, tzinfo=UTC)
    async with (
        smtp_sink(tmp_path) as sink,
        running_service(settings_for(fresh_cluster, smtp_port=sink.port)) as run,
    ):
        await register(run, "u-marie", ("agent",))
        await register(run, "u-desk", ("agent", "desk:urbanisme"))
        await register(run, "u-done", ("agent",))
        await eventually(
            lambda: directory_has(run, *((TENANT, u) for u in ("u-marie", "u-desk", "u-done"))),
            what="contacts",
        )
        waiting = {"users": ("u-marie",), "desks": ("urbanisme",)}
        await emit(run, "parapheur", ReminderDue(step=2, due_at=due, **waiting), "f-r", TENANT)
        await emit(
            run,
            "parapheur",
            FolderOverdue(step=2, due_at=due + timedelta(days=1), **waiting),
            "f-r",
            TENANT,
        )
        expected = ["u-desk@merignac.fr", "u-marie@merignac.fr"]
        assert await eventually(lambda: received(tmp_path, REMINDER, 2)) == expected
        assert await eventually(lambda: received(tmp_path, OVERDUE, 2)) == expected
        reminder = next(m for m in mails(tmp_path) if m["subject"] == REMINDER)
        assert "f-r" in reminder["text"]
        assert "2026-12-24" in reminder["text"]
        entries = await eventually(lambda: settled_entries(run, TENANT, 3 + 8))
        assert not any(n.user_id == "u-done" and n.category == "reminders" for n in entries)
        assert {n.category for n in entries if n.kind.startswith("parapheur.")} == {"reminders"}


async def test_an_integrity_failure_alerts_the_tenants_archivists_only(
    fresh_cluster: LocalCluster, tmp_path: Path
) -> None:
    async with (
        smtp_sink(tmp_path) as sink,
        running_service(settings_for(fresh_cluster, smtp_port=sink.port)) as run,
    ):
        await register(run, "u-arch", ("agent", "archivist"))
        await register(run, "u-agent", ("agent",))
        await register(run, "u-arch-pessac", ("agent", "archivist"), tenant=OTHER)
        await eventually(
            lambda: directory_has(
                run, (TENANT, "u-arch"), (TENANT, "u-agent"), (OTHER, "u-arch-pessac")
            ),
            what="contacts",
        )
        await emit(
            run,
            "archive",
            IntegrityFailed(
                kind="object",
                record_id="rec-7",
                reference="DELIB-2026-042",
                reason="sha256 of the stored content differs from the ingest digest",
                detected_at=datetime.now(UTC),
            ),
            "fixity",
            TENANT,
        )
        who = await eventually(lambda: received(tmp_path, INTEGRITY, 1), what="alert")
        assert who == ["u-arch@merignac.fr"]
        alert = next(m for m in mails(tmp_path) if m["subject"] == INTEGRITY)
        assert "DELIB-2026-042" in alert["text"]
        assert "sha256" in alert["text"]
        inbox = await eventually(lambda: run.deps.stores.inbox_items(TENANT, "u-arch"))
        assert inbox[0].title == INTEGRITY
        assert await run.deps.stores.inbox_items(TENANT, "u-agent") == []
        assert await run.deps.stores.inbox_items(OTHER, "u-arch-pessac") == []


async def test_every_status_change_is_published_as_an_event(
    fresh_cluster: LocalCluster, tmp_path: Path
) -> None:
    async with (
        smtp_sink(tmp_path) as sink,
        running_service(settings_for(fresh_cluster, smtp_port=sink.port)) as run,
    ):
        await register(run, "u-ok", ("agent",))
        [ok] = await eventually(lambda: settled_entries(run, TENANT, 1), what="welcome")
        sink.forced_replies = ["550 5.1.1 no such mailbox"]
        await register(run, "u-gone", ("agent",))
        entries = await eventually(lambda: settled_entries(run, TENANT, 2), what="refusal")
        gone = next(n for n in entries if n.user_id == "u-gone")

        async def events_of(notification_id: str, count: int) -> list[object]:
            found = await status_events(run, TENANT, notification_id)
            return found if len(found) >= count else []

        requested, sent, delivered = await eventually(lambda: events_of(ok.id, 3))
        assert isinstance(requested, NotificationRequested)
        assert (requested.kind, requested.channel) == ("identity.welcome", "email")
        assert isinstance(sent, NotificationSent)
        assert (sent.attempt, sent.provider) == (1, "smtp-primary")
        assert isinstance(delivered, NotificationDelivered)
        assert delivered.message_id == ok.message_id

        requested, sent, failed = await eventually(lambda: events_of(gone.id, 3))
        assert isinstance(failed, NotificationFailed)
        assert failed.permanent
        assert "550" in failed.reason
        # No personal data in the stream (kept forever): no address, no content.
        for event in (requested, sent, failed):
            assert "u-gone@merignac.fr" not in event.model_dump_json()
