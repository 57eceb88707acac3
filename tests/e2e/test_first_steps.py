"""What a new user sees once `mutualis up` has started: how to log in, and it works."""

from __future__ import annotations

import re

import httpx

from identity.devseed import DEMO_CLIENT_ID, DEMO_PASSWORD

from .conftest import RunningPlatform


async def test_up_says_how_to_log_in_and_the_issuer_it_names_answers(
    running_platform: RunningPlatform,
) -> None:
    output = running_platform.up_output
    found = re.search(r"OpenID Connect issuer (\S+)", output)
    assert found, output
    assert DEMO_CLIENT_ID in output
    assert DEMO_PASSWORD in output
    assert "mutualis dev credentials" in output
    async with httpx.AsyncClient() as http:
        discovery = await http.get(f"{found.group(1)}/.well-known/openid-configuration")
    assert discovery.status_code == 200
    assert discovery.json()["issuer"] == found.group(1)
