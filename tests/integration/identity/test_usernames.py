"""A username opens the one live account that holds it, even on an instance that has already
looked that name up (identity remembers names it has resolved, to save a read per login).

Driven through the admin API, the citizen's own erasure and the real login page of a real
`python -m identity` on a real cluster.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from identity.devseed import DEMO_PASSWORD

from .conftest import RunningIdentity, log_in, log_in_tokens

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

TENANT, ADMIN = "bruges", "admin.bruges"


async def create_citizen(identity: RunningIdentity, admin_token: str, username: str) -> str:
    """The new account's id; retried while the name is still held (an erasure of the
    previous holder is projected asynchronously)."""
    async with httpx.AsyncClient(base_url=identity.url) as http:
        deadline = time.monotonic() + 30
        while True:
            created = await http.post(
                f"/admin/tenants/{TENANT}/users",
                json={
                    "username": username,
                    "kind": "citizen",
                    "name": "Nina Roux",
                    "password": DEMO_PASSWORD,
                },
                headers={"Authorization": f"Bearer {admin_token}"},
            )
            if created.status_code != 409 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


async def test_a_name_freed_by_an_erasure_opens_the_new_account_not_the_erased_one(
    identity_dc1: RunningIdentity,
) -> None:
    async with httpx.AsyncClient(base_url=identity_dc1.url) as admin_browser:
        admin = await log_in_tokens(identity_dc1, admin_browser, ADMIN)
    first = await create_citizen(identity_dc1, admin["access_token"], "nina.roux")
    async with httpx.AsyncClient(base_url=identity_dc1.url) as browser:
        tokens = await log_in_tokens(identity_dc1, browser, "nina.roux")  # the name is known now
        erased = await browser.delete(
            "/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
        )
        assert erased.status_code == 204, erased.text

    second = await create_citizen(identity_dc1, admin["access_token"], "nina.roux")

    assert second != first
    async with httpx.AsyncClient(base_url=identity_dc1.url) as browser:
        assert await log_in(identity_dc1, browser, "nina.roux") == second
