"""The HTTP API: tenant walls on templates and inboxes, validation, sends by service clients."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import httpx

from mutualis_kernel.runtime import LocalCluster
from mutualis_kernel.testing.issuer import TestIssuer
from notifications.adapters.stores import InboxItem
from notifications.bootstrap import wiring_for

from .conftest import eventually, mails, running_service, settings_for, smtp_sink

MERIGNAC, PESSAC = "merignac", "pessac"


async def test_tenants_are_walls_and_bad_input_is_a_clear_4xx(
    fresh_cluster: LocalCluster, tmp_path: Path
) -> None:
    issuer = TestIssuer()
    async with issuer.running(), smtp_sink(tmp_path) as sink:
        settings = settings_for(fresh_cluster, smtp_port=sink.port, issuer_url=issuer.issuer)
        async with running_service(settings) as run:
            app = wiring_for(run.platform, run.deps, settings).app
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
                admin = issuer.bearer("adm", MERIGNAC, roles=("tenant-admin",))
                template = {
                    "kind": "rappel",
                    "variables": ["date"],
                    "subject": "Rappel",
                    "text": "Rendez-vous le {{ date }}",
                }
                url = f"/v1/tenants/{MERIGNAC}/templates/rappel"
                saved = await http.put(url, json=template, headers=admin)
                assert saved.status_code == 200, saved.text
                bad = {**template, "text": "{{ inconnue }}"}
                refused = await http.put(url, json=bad, headers=admin)
                assert refused.status_code == 422
                assert refused.json()["error"] == "template_invalid"
                other = issuer.bearer("adm2", PESSAC, roles=("tenant-admin",))
                assert (await http.get(url, headers=other)).status_code == 403

                client = issuer.bearer("app", MERIGNAC, kind="service", roles=())
                send = f"/v1/tenants/{MERIGNAC}/notifications"
                body = {
                    "kind": "rappel",
                    "address": "cit@example.org",
                    "variables": {"date": "lundi"},
                    "reference": "r1",
                }
                accepted = await http.post(send, json=body, headers=client)
                assert accepted.status_code == 202
                missing = {**body, "variables": {}, "reference": "r2"}
                assert (await http.post(send, json=missing, headers=client)).status_code == 422
                bad_address = {**body, "address": "nope", "reference": "r3"}
                assert (await http.post(send, json=bad_address, headers=client)).status_code == 422
                foreign = f"/v1/tenants/{PESSAC}/notifications"
                assert (await http.post(foreign, json=body, headers=client)).status_code == 403
                http_cb = {"callback_url": "http://x.example/cb"}
                settings_url = f"/v1/tenants/{MERIGNAC}/settings"
                # Dev mode allows http callbacks (outside it they are refused: see below).
                assert (
                    await http.put(settings_url, json=http_cb, headers=admin)
                ).status_code == 200

                await eventually(lambda: asyncio.sleep(0, mails(tmp_path)), what="mail")
                nid = accepted.json()["id"]
                status = await http.get(f"{send}/{nid}", headers=client)
                assert status.json()["status"] in ("sending", "delivered")

                # Inboxes are per user and per tenant.
                from datetime import UTC, datetime

                await run.deps.stores.put_inbox_item(
                    MERIGNAC,
                    "u1",
                    InboxItem(
                        id="i1",
                        kind="k",
                        category="c",
                        title="t",
                        body="b",
                        created_at=datetime.now(UTC),
                    ),
                )
                mine = issuer.bearer("u1", MERIGNAC, kind="citizen", roles=())
                same_sub_elsewhere = issuer.bearer("u1", PESSAC, kind="citizen", roles=())
                page = (await http.get("/v1/me/inbox", headers=mine)).json()
                assert page["unread"] == 1
                elsewhere = (await http.get("/v1/me/inbox", headers=same_sub_elsewhere)).json()
                assert elsewhere["items"] == []
                read = await http.post("/v1/me/inbox/i1/read", headers=same_sub_elsewhere)
                assert read.status_code == 404
                assert (await http.post("/v1/me/inbox/i1/read", headers=mine)).status_code == 204
                unread = await http.get("/v1/me/inbox/unread", headers=mine)
                assert unread.json() == {"unread": 0}


async def test_outside_dev_mode_a_callback_url_must_be_https(
    fresh_cluster: LocalCluster, tmp_path: Path
) -> None:
    issuer = TestIssuer()
    async with issuer.running(), smtp_sink(tmp_path) as sink:
        settings = settings_for(fresh_cluster, smtp_port=sink.port, issuer_url=issuer.issuer)
        async with running_service(settings) as run:
            # The same service as production runs it: dev mode off for the API's checks.
            production = replace(run.deps, dev_mode=False)
            app = wiring_for(run.platform, production, settings).app
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
                admin = issuer.bearer("adm", MERIGNAC, roles=("tenant-admin",))
                url = f"/v1/tenants/{MERIGNAC}/settings"
                secret = "a-callback-secret-of-merignac"
                for refused_url in ("http://app.merignac.fr/cb", "ftp://app.merignac.fr/cb", "/cb"):
                    refused = await http.put(
                        url,
                        json={"callback_url": refused_url, "callback_secret": secret},
                        headers=admin,
                    )
                    assert refused.status_code == 422, refused_url
                    assert refused.json()["error"] == "invalid_callback"
                assert (await run.deps.stores.tenant_config(MERIGNAC)).callback_url is None
                https = {"callback_url": "https://app.merignac.fr/cb", "callback_secret": secret}
                accepted = await http.put(url, json=https, headers=admin)
                assert accepted.status_code == 200, accepted.text
                stored = await run.deps.stores.tenant_config(MERIGNAC)
                assert stored.callback_url == "https://app.merignac.fr/cb"
