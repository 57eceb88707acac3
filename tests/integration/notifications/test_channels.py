"""SMS gateways, the live inbox stream and status callbacks, each against real local servers.

No real operator or calling application can run here: the SMS providers are test SMS gateways
(uvicorn apps speaking the generic JSON/HTTP protocol) and the calling application is a local
HTTP receiver. The cluster, the service and its SMTP sink are the real ones.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from identity.domain.events import UserRegistered
from mutualis_kernel.bus.publisher import EventPublisher
from mutualis_kernel.runtime import LocalCluster
from mutualis_kernel.testing.issuer import TestIssuer
from notifications.adapters.stores import TenantConfig
from notifications.bootstrap import wiring_for
from notifications.devsinks import list_mail
from notifications.domain.model import Notification
from parapheur.domain.events import StepAssigned

from .conftest import (
    Recorder,
    Running,
    callback_receiver_app,
    eventually,
    http_server,
    running_service,
    settings_for,
    sms_gateway_app,
    smtp_sink,
)

TENANT = "merignac"
SECRET = "callback-secret-of-merignac"
REMINDER = {
    "kind": "rappel",
    "variables": ["date"],
    "subject": "Rappel",
    "text": "Rendez-vous le {{ date }}",
    # The emoji is outside GSM-7: the message goes as UCS-2 (70 characters a segment).
    "sms": "{{ commune.name }} : rendez-vous le {{ date }} \U0001f4c5",
}


async def register(run: Running, user_id: str, email: str) -> None:
    await EventPublisher(run.platform.js, source_service="identity").publish(
        UserRegistered(user_id=user_id, tenant=TENANT, kind="agent", email=email, name="Marie"),
        tenant=TENANT,
        aggregate_id=user_id,
    )


async def settled(run: Running, notification_id: str) -> Notification | None:
    loaded = await run.deps.stores.load_notification(TENANT, notification_id)
    if loaded is None or not loaded[0].is_terminal:
        return None
    return loaded[0]


async def ledger_entry_of(run: Running, user_id: str) -> Notification | None:
    async for notification, _ in run.deps.stores.notifications(TENANT):
        if notification.user_id == user_id and notification.is_terminal:
            return notification
    return None


async def test_an_sms_fails_over_to_the_second_gateway_and_keeps_its_receipt(
    fresh_cluster: LocalCluster, tmp_path: Path
) -> None:
    first, second = Recorder(always=503), Recorder()
    issuer = TestIssuer()
    async with (
        issuer.running(),
        smtp_sink(tmp_path) as sink,
        http_server(sms_gateway_app("gw1", first)) as first_url,
        http_server(sms_gateway_app("gw2", second)) as second_url,
    ):
        settings = settings_for(
            fresh_cluster,
            smtp_port=sink.port,
            issuer_url=issuer.issuer,
            sms_gateway_url=f"{first_url}/sms",
            sms_secondary_gateway_url=f"{second_url}/sms",
        )
        async with running_service(settings) as run:
            app = wiring_for(run.platform, run.deps, settings).app
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
                admin = issuer.bearer("adm", TENANT, roles=("tenant-admin",))
                saved = await http.put(
                    f"/v1/tenants/{TENANT}/templates/rappel", json=REMINDER, headers=admin
                )
                assert saved.status_code == 200, saved.text
                application = issuer.bearer("app", TENANT, kind="service", roles=())
                send = f"/v1/tenants/{TENANT}/notifications"
                accepted = await http.post(
                    send,
                    json={
                        "kind": "rappel",
                        "channel": "sms",
                        "address": "06 12 34 56 78",
                        "variables": {"date": "lundi 3"},
                        "reference": "sms-1",
                    },
                    headers=application,
                )
                assert accepted.status_code == 202, accepted.text
                nid = accepted.json()["id"]

                delivered = await eventually(lambda: settled(run, nid), what="SMS settled")
                assert delivered.status == "delivered", delivered.reason
                assert first.hits >= 1  # the first gateway was asked, and failed
                [sms] = second.received
                assert sms["to"] == "+33612345678"
                assert sms["text"] == "Mérignac : rendez-vous le lundi 3 \U0001f4c5"
                assert sms["headers"]["idempotency-key"] == nid
                # The second gateway's receipt is the evidence kept in the ledger.
                assert delivered.provider == "sms-secondary"
                assert delivered.message_id == "gw2-1"
                assert delivered.content.sms_segments == 1

                # A gateway that judges the message (4xx) is not bypassed: no second try.
                first.always, first.statuses = None, [422]
                refused = await http.post(
                    send,
                    json={
                        "kind": "rappel",
                        "channel": "sms",
                        "address": "+33699887766",
                        "variables": {"date": "mardi"},
                        "reference": "sms-2",
                    },
                    headers=application,
                )
                failed = await eventually(
                    lambda: settled(run, refused.json()["id"]), what="refusal settled"
                )
                assert failed.status == "permanent-failure"
                assert "sms-primary: HTTP 422" in failed.reason
                assert len(second.received) == 1


async def read_events(lines: AsyncIterator[str], wanted: str) -> list[dict[str, Any]]:
    """SSE `inbox` events in order, up to and including the first whose body has `wanted`."""
    events: list[dict[str, Any]] = []
    name = ""
    async for line in lines:
        if line.startswith("event:"):
            name = line.removeprefix("event:").strip()
        elif line.startswith("data:") and name == "inbox":
            events.append(json.loads(line.removeprefix("data:")))
            if wanted in events[-1]["body"]:
                return events
        elif not line:
            name = ""
    raise AssertionError("the stream ended")


async def test_the_inbox_stream_shows_a_new_message_while_it_is_routed(
    fresh_cluster: LocalCluster, tmp_path: Path
) -> None:
    issuer = TestIssuer()
    async with issuer.running(), smtp_sink(tmp_path) as sink:
        settings = settings_for(fresh_cluster, smtp_port=sink.port, issuer_url=issuer.issuer)
        async with running_service(settings) as run:
            for user in ("u-live", "u-other"):
                await register(run, user, f"{user}@merignac.fr")
            await eventually(lambda: run.deps.stores.contact(TENANT, "u-other"), what="contact")
            parapheur = EventPublisher(run.platform.js, source_service="parapheur")
            app = wiring_for(run.platform, run.deps, settings).app
            async with (
                http_server(app) as base_url,
                httpx.AsyncClient(base_url=base_url, timeout=30) as http,
                http.stream(
                    "GET", "/v1/me/inbox/stream", headers=issuer.bearer("u-live", TENANT)
                ) as response,
            ):
                assert response.status_code == 200
                assert response.headers["content-type"].startswith("text/event-stream")
                lines = response.aiter_lines()
                assert await anext(lines) == ": connected"
                # Another user's message first: if the stream crossed users it would show.
                for folder, user in (("f-other", "u-other"), ("f-live", "u-live")):
                    await parapheur.publish(
                        StepAssigned(step=1, kind="signature", mode="any", users=(user,)),
                        tenant=TENANT,
                        aggregate_id=folder,
                    )
                async with asyncio.timeout(30):
                    events = await read_events(lines, "f-live")
            assert events[-1]["title"] == "Un dossier attend votre action"
            assert events[-1]["read"] is False
            assert not any("f-other" in event["body"] for event in events)


def verified(secret: str, delivery: dict[str, Any]) -> dict[str, Any]:
    """The receiver's side of the contract: check `t=<unix>,v1=<hmac>` over `<t>.<body>`."""
    fields = dict(part.split("=", 1) for part in delivery["signature"].split(","))
    expected = hmac.new(
        secret.encode(), fields["t"].encode() + b"." + delivery["body"], hashlib.sha256
    ).hexdigest()
    assert hmac.compare_digest(fields["v1"], expected), "bad signature"
    payload: dict[str, Any] = json.loads(delivery["body"])
    return payload


async def test_the_calling_application_receives_signed_status_callbacks(
    fresh_cluster: LocalCluster, tmp_path: Path
) -> None:
    receiver = Recorder()
    async with (
        smtp_sink(tmp_path) as sink,
        http_server(callback_receiver_app(receiver)) as receiver_url,
    ):
        settings = settings_for(fresh_cluster, smtp_port=sink.port)
        async with running_service(settings) as run:
            await run.deps.stores.save_tenant_config(
                TENANT,
                TenantConfig(
                    callback_url=f"{receiver_url}/callbacks/notifications",
                    callback_secret=SECRET,
                ),
            )
            await register(run, "u-cb", "cb@merignac.fr")
            welcome = await eventually(lambda: ledger_entry_of(run, "u-cb"), what="welcome")
            await eventually(lambda: asyncio.sleep(0, receiver.received), what="callback")
            delivered = verified(SECRET, receiver.received[0])
            assert delivered == {
                "notification_id": welcome.id,
                "status": "delivered",
                "channel": "email",
                "kind": welcome.kind,
                "reason": "",
            }

            sink.forced_replies = ["550 5.1.1 no such mailbox"]
            await register(run, "u-cb-gone", "gone@merignac.fr")
            await eventually(lambda: asyncio.sleep(0, len(receiver.received) == 2), what="second")
            failed = verified(SECRET, receiver.received[1])
            assert failed["status"] == "permanent-failure"
            assert "550" in failed["reason"]

            # A signature is bound to its body: replayed on another body, it does not verify.
            forged = {**receiver.received[1], "signature": receiver.received[0]["signature"]}
            with pytest.raises(AssertionError, match="bad signature"):
                verified(SECRET, forged)


async def test_an_sms_gateway_that_went_silent_after_the_request_is_not_bypassed(
    fresh_cluster: LocalCluster, tmp_path: Path
) -> None:
    # The first gateway received the request and never answered: it may have sent the SMS,
    # so the second gateway must not be asked (a second SMS), and nothing is retried.
    first, second = Recorder(hang=True), Recorder()
    issuer = TestIssuer()
    async with (
        issuer.running(),
        smtp_sink(tmp_path) as sink,
        http_server(sms_gateway_app("gw1", first)) as first_url,
        http_server(sms_gateway_app("gw2", second)) as second_url,
    ):
        settings = settings_for(
            fresh_cluster,
            smtp_port=sink.port,
            issuer_url=issuer.issuer,
            sms_gateway_url=f"{first_url}/sms",
            sms_secondary_gateway_url=f"{second_url}/sms",
            sms_timeout_s=1.0,
        )
        async with running_service(settings) as run:
            app = wiring_for(run.platform, run.deps, settings).app
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
                accepted = await http.post(
                    f"/v1/tenants/{TENANT}/notifications",
                    json={
                        "kind": "message",
                        "channel": "sms",
                        "address": "+33611223344",
                        "variables": {"subject": "Info", "body": "Coupure d'eau demain"},
                        "reference": "sms-silent",
                    },
                    headers=issuer.bearer("app", TENANT, kind="service", roles=()),
                )
                assert accepted.status_code == 202, accepted.text
                entry = await eventually(
                    lambda: settled(run, accepted.json()["id"]), what="SMS settled"
                )
    assert entry.status == "permanent-failure"
    assert entry.reason.startswith("unconfirmed: sms-primary: ReadTimeout"), entry.reason
    assert len(first.received) == 1
    assert second.received == []


async def test_sandbox_mode_redirects_email_and_sms_and_needs_its_test_addresses(
    fresh_cluster: LocalCluster, tmp_path: Path
) -> None:
    gateway = Recorder()
    issuer = TestIssuer()
    async with (
        issuer.running(),
        smtp_sink(tmp_path) as sink,
        http_server(sms_gateway_app("gw", gateway)) as gateway_url,
    ):
        settings = settings_for(
            fresh_cluster,
            smtp_port=sink.port,
            issuer_url=issuer.issuer,
            sms_gateway_url=f"{gateway_url}/sms",
        )
        async with running_service(settings) as run:
            app = wiring_for(run.platform, run.deps, settings).app
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
                admin = issuer.bearer("adm", TENANT, roles=("tenant-admin",))
                url = f"/v1/tenants/{TENANT}/settings"
                # Sandbox on without somewhere safe to send to is refused, with the reason.
                for incomplete in (
                    {"sandbox": True},
                    {"sandbox": True, "sandbox_mailbox": "recette@merignac.fr"},
                    {"sandbox": True, "sandbox_phone": "06 99 00 00 00"},
                    {"sandbox": True, "sandbox_mailbox": "nope", "sandbox_phone": "0699000000"},
                ):
                    refused = await http.put(url, json=incomplete, headers=admin)
                    assert refused.status_code == 422, incomplete
                    assert refused.json()["error"] == "invalid_settings"
                complete = {
                    "sandbox": True,
                    "sandbox_mailbox": "recette@merignac.fr",
                    "sandbox_phone": "06 99 00 00 00",
                }
                saved = await http.put(url, json=complete, headers=admin)
                assert saved.status_code == 200, saved.text
                assert saved.json()["sandbox_phone"] == "+33699000000"

                await register(run, "u-real", "real@merignac.fr")
                await EventPublisher(run.platform.js, source_service="parapheur").publish(
                    StepAssigned(step=1, kind="visa", mode="any", users=("u-real",)),
                    tenant=TENANT,
                    aggregate_id="f-sandbox",
                )
                application = issuer.bearer("app", TENANT, kind="service", roles=())
                sms = {
                    "kind": "message",
                    "channel": "sms",
                    "address": "+33611223344",
                    "variables": {"subject": "Info", "body": "Test"},
                }
                sent = await http.post(
                    f"/v1/tenants/{TENANT}/notifications",
                    json={**sms, "reference": "sandbox-sms"},
                    headers=application,
                )
                assert sent.status_code == 202, sent.text
                delivered = await eventually(lambda: settled(run, sent.json()["id"]), what="SMS")
                assert delivered.status == "delivered", delivered.reason
                assert [m["to"] for m in gateway.received] == ["+33699000000"]
                await eventually(
                    lambda: asyncio.sleep(0, len(list_mail(tmp_path)) == 2), what="two mails"
                )
                assert all(m["to"] == ["recette@merignac.fr"] for m in list_mail(tmp_path))
                # In-app messages stay in the named account's inbox (they leave nobody's
                # platform): the step is there.
                inbox = await eventually(lambda: run.deps.stores.inbox_items(TENANT, "u-real"))
                assert "f-sandbox" in inbox[0].body

                # Settings saved before the check existed: sandbox on, no test phone. The SMS
                # is refused rather than sent to the real number.
                await run.deps.stores.save_tenant_config(
                    TENANT, TenantConfig(sandbox=True, sandbox_mailbox="recette@merignac.fr")
                )
                legacy = await http.post(
                    f"/v1/tenants/{TENANT}/notifications",
                    json={**sms, "reference": "sandbox-sms-2"},
                    headers=application,
                )
                assert legacy.status_code == 202, legacy.text
                assert legacy.json()["status"] == "permanent-failure"
                assert "sandbox mode without a test address for sms" in legacy.json()["reason"]
                assert len(gateway.received) == 1
