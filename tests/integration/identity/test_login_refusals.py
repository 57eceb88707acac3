"""A refused login says nothing about the account, and every refusal is a security event.

Driven as a browser does it, through the real login page of a real `python -m identity` on a
real cluster; the events are read back from the identity stream.
"""

from __future__ import annotations

import re
import secrets

import httpx
import pytest
from authlib.common.security import generate_token

from identity.devseed import DEMO_PASSWORD
from identity.domain.events import LoginFailed, LoginSucceeded
from mutualis_kernel.runtime import LocalCluster

from .conftest import RunningIdentity, browser, demo_client, log_in, security_events

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

TENANT, USERNAME = "pessac", "agent.pessac"
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
ERROR = re.compile(r'<p class="erreur" id="erreur">([^<]+)</p>')


async def refused_login(
    identity: RunningIdentity, http: httpx.AsyncClient, username: str, password: str
) -> str:
    """Post the login form; the error the page shows (the status must be 400)."""
    client = demo_client()
    url, _ = client.create_authorization_url(
        f"{identity.url}/authorize", code_verifier=generate_token(48), prompt="login"
    )
    await client.aclose()
    page = await http.get(url)
    request = re.search(r'name="request" value="([^"]+)"', page.text)
    assert request, page.text
    answer = await http.post(
        "/login", data={"request": request.group(1), "username": username, "password": password}
    )
    assert answer.status_code == 400, answer.text
    # The form is shown again, with what was typed as the identifier, never the password.
    assert f'value="{username}"' in answer.text
    assert password not in answer.text
    shown = ERROR.search(answer.text)
    assert shown, answer.text
    return shown.group(1)


async def test_an_unknown_account_and_a_wrong_password_are_refused_in_the_same_words(
    identity_dc1: RunningIdentity, nats_cluster: LocalCluster
) -> None:
    http = browser(identity_dc1, FIREFOX)
    user_id = await log_in(identity_dc1, http, USERNAME)
    stranger = f"personne.{secrets.token_hex(4)}"
    unknown_before = len(await security_events(nats_cluster, "metropole", "unknown"))

    wrong_password = await refused_login(identity_dc1, http, USERNAME, "pas-le-bon-mot-de-passe")
    no_such_account = await refused_login(identity_dc1, http, stranger, DEMO_PASSWORD)
    await http.aclose()

    assert wrong_password == no_such_account
    events = await security_events(nats_cluster, TENANT, user_id)
    assert [type(e) for e in events[-2:]] == [LoginSucceeded, LoginFailed]
    assert events[-1].reason == "bad_credentials"
    assert events[-1].tenant == TENANT
    # An identifier that matches no account is recorded under the metropolis, as "unknown":
    # the identifier itself (perhaps a password typed in the wrong field) is not kept.
    unknown = await security_events(nats_cluster, "metropole", "unknown")
    assert len(unknown) == unknown_before + 1
    assert unknown[-1].reason == "bad_credentials"
    assert stranger not in unknown[-1].model_dump_json()
