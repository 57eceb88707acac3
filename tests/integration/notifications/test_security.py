"""Security notifications end to end: real logins on a real identity (`python -m identity`,
dev accounts seeded) on the same real cluster as notifications, down to the SMTP sink."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from mutualis_kernel.runtime import LocalCluster
from notifications.domain.model import Preferences

from ..identity.conftest import browser, log_in, start_identity, stop_identity
from .conftest import eventually, mails, running_service, settings_for, smtp_sink

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

TENANT, USERNAME = "merignac", "agent.merignac"
ADDRESS = f"{USERNAME}@example.org"  # the dev seed's address for the account
SUBJECT = "Connexion à votre compte depuis un nouvel appareil"
FIREFOX_LINUX = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
CHROME_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)


def security_mails(directory: Path) -> list[dict[str, object]]:
    return [m for m in mails(directory) if ADDRESS in m["to"] and m["subject"] == SUBJECT]  # type: ignore[operator]


async def test_a_login_from_a_new_device_warns_the_person_even_if_they_opted_out(
    fresh_cluster: LocalCluster, tmp_path: Path
) -> None:
    async with (
        smtp_sink(tmp_path) as sink,
        running_service(settings_for(fresh_cluster, smtp_port=sink.port)) as run,
    ):
        identity = await asyncio.to_thread(
            start_identity, fresh_cluster.urls_for("dc1"), None, "dc1"
        )
        try:
            home = browser(identity, FIREFOX_LINUX)
            user_id = await log_in(identity, home, USERNAME)  # the account's first device
            # The person asked for no email at all; security messages are critical.
            await run.deps.stores.save_preferences(
                TENANT, user_id, Preferences(opted_out={"*": ("email",)})
            )
            await log_in(identity, home, USERNAME)
            elsewhere = browser(identity, CHROME_WINDOWS)
            await log_in(identity, elsewhere, USERNAME)
            for http in (home, elsewhere):
                await http.aclose()
            [mail] = await eventually(
                lambda: asyncio.sleep(0, security_mails(tmp_path)), what="security mail"
            )
            assert "Chrome sur Windows" in str(mail["text"])
            inbox = await eventually(lambda: run.deps.stores.inbox_items(TENANT, user_id))
            assert [item.title for item in inbox] == [SUBJECT]
            assert inbox[0].category == "security"
            entries = [
                n
                async for n, _ in run.deps.stores.notifications(TENANT)
                if n.kind == "identity.security.new-device"
            ]
            assert {(n.channel, n.critical) for n in entries} == {("email", True), ("inapp", True)}
        finally:
            await asyncio.to_thread(stop_identity, identity)
    assert len(security_mails(tmp_path)) == 1  # the first and the known browser: nothing
