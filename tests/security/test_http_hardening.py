"""HTTP hardening, checked on the real identity app and the kernel's app factory.

CSP on the login page, HSTS outside dev mode only, `no-store` on token responses, CORS only
for registered origins, request bodies bounded, logins and the token
endpoint's client authentication throttled.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from identity.devseed import DEMO_CLIENT_ID, DEMO_PASSWORD, DEMO_REDIRECT_URI, service_client_secret
from mutualis_kernel.config import KernelSettings
from mutualis_kernel.http import DEFAULT_MAX_BODY_BYTES, create_app
from mutualis_kernel.runtime import LocalCluster

from .conftest import UnderTest, under_test

VERIFIER = "a" * 64
CHALLENGE = base64.urlsafe_b64encode(hashlib.sha256(VERIFIER.encode()).digest()).rstrip(b"=")


@pytest.fixture
async def identity(nats_cluster: LocalCluster, tmp_path: Path) -> AsyncIterator[UnderTest]:
    async with under_test("identity", nats_cluster, tmp_path) as under:
        yield under


async def login_page(http: httpx.AsyncClient) -> tuple[httpx.Response, str]:
    page = await http.get(
        "/authorize",
        params={
            "client_id": DEMO_CLIENT_ID,
            "redirect_uri": DEMO_REDIRECT_URI,
            "response_type": "code",
            "scope": "openid",
            "state": "s1",
            "code_challenge": CHALLENGE.decode(),
            "code_challenge_method": "S256",
        },
    )
    assert page.status_code == 200, page.text
    found = re.search(r'name="request" value="([^"]+)"', page.text)
    assert found, page.text
    return page, found.group(1)


async def test_the_login_page_has_a_strict_content_security_policy(identity: UnderTest) -> None:
    async with identity.client() as http:
        page, _ = await login_page(http)
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "frame-ancestors 'none'" in policy
    assert "script-src" not in policy  # no script may run at all
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["x-frame-options"] == "DENY"


async def test_token_responses_are_never_cached(identity: UnderTest) -> None:
    async with identity.client() as http:
        granted = await http.post(
            "/token",
            data={"grant_type": "client_credentials"},
            auth=("svc-archive", service_client_secret("archive")),
        )
        refused = await http.post(
            "/token", data={"grant_type": "client_credentials"}, auth=("svc-archive", "wrong")
        )
    assert granted.status_code == 200, granted.text
    assert granted.headers["cache-control"] == "no-store"
    assert refused.status_code == 401
    assert refused.headers["cache-control"] == "no-store"


async def test_request_bodies_over_the_limit_are_refused_before_they_are_read(
    identity: UnderTest,
) -> None:
    async with identity.client() as http:
        answer = await http.post(
            "/token",
            content=b"x" * (DEFAULT_MAX_BODY_BYTES + 1),
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
    assert answer.status_code == 413


async def test_logins_are_throttled_per_account(identity: UnderTest) -> None:
    username = "camille.martin"
    async with identity.client() as http:
        for _ in range(6):
            _, request = await login_page(http)
            failed = await http.post(
                "/login",
                data={"request": request, "username": username, "password": "not-the-password"},
            )
            assert failed.status_code == 400
        _, request = await login_page(http)
        right = await http.post(
            "/login", data={"request": request, "username": username, "password": DEMO_PASSWORD}
        )
    # Even the right password is refused while the account is throttled: the login page
    # again with the one generic message, no redirect to the client.
    assert right.status_code == 400
    assert "location" not in right.headers
    assert "trop de tentatives" in right.text


def from_address(under: UnderTest, address: str) -> httpx.AsyncClient:
    """A client whose requests come from `address`: throttling state is per address and
    outlives a test on the shared cluster, so each test attacks from its own."""
    transport = httpx.ASGITransport(app=under.app, client=(address, 4242))
    return httpx.AsyncClient(transport=transport, base_url="http://identity")


def unique_address() -> str:
    return f"2001:db8::{secrets.randbelow(0xFFFF):x}:{secrets.randbelow(0xFFFF):x}"


async def test_the_token_endpoint_throttles_repeated_failures_for_one_client_id(
    identity: UnderTest,
) -> None:
    # An id nobody registered: refusals must not reveal whether a client exists, so unknown
    # ids are counted exactly like known ones (and no real client is locked out here).
    client_id = f"svc-guess-{uuid.uuid4().hex[:8]}"
    answers = []
    for _ in range(8):
        async with from_address(identity, unique_address()) as http:
            answer = await http.post(
                "/token", data={"grant_type": "client_credentials"}, auth=(client_id, "guess")
            )
        answers.append(answer.status_code)
    assert answers[:5] == [401] * 5
    assert answers[5:] == [429] * 3
    assert answer.headers["cache-control"] == "no-store"
    assert answer.headers["retry-after"]
    assert answer.json()["error"] == "invalid_client"


async def test_the_token_endpoint_throttles_one_address_guessing_many_clients(
    identity: UnderTest,
) -> None:
    async with from_address(identity, unique_address()) as http:
        for attempt in range(20):
            refused = await http.post(
                "/token",
                data={"grant_type": "client_credentials"},
                auth=(f"svc-guess-{attempt}-{uuid.uuid4().hex[:6]}", "guess"),
            )
            assert refused.status_code == 401
        # Even a real client with its right secret is refused from that address for now.
        right = await http.post(
            "/token",
            data={"grant_type": "client_credentials"},
            auth=("svc-archive", service_client_secret("archive")),
        )
    assert right.status_code == 429
    async with from_address(identity, unique_address()) as elsewhere:
        granted = await elsewhere.post(
            "/token",
            data={"grant_type": "client_credentials"},
            auth=("svc-archive", service_client_secret("archive")),
        )
    assert granted.status_code == 200, granted.text


def app_with(**settings: object) -> httpx.AsyncClient:
    app = create_app(title="t", version="0", settings=KernelSettings(**settings))  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_hsts_is_sent_outside_dev_mode_only() -> None:
    async with app_with(dev_mode=False) as production, app_with(dev_mode=True) as dev:
        prod_answer = await production.get("/healthz")
        dev_answer = await dev.get("/healthz")
    assert prod_answer.headers["strict-transport-security"].startswith("max-age=")
    assert "strict-transport-security" not in dev_answer.headers


async def test_cors_answers_registered_origins_only() -> None:
    registered = "https://portail.bordeaux.fr"
    preflight = {"access-control-request-method": "GET"}
    async with (
        app_with(dev_mode=True) as closed,
        app_with(dev_mode=True, allowed_origins=[registered]) as open_to_one,
    ):
        nothing = await closed.get("/healthz", headers={"origin": registered})
        allowed = await open_to_one.options("/healthz", headers={"origin": registered, **preflight})
        foreign = await open_to_one.options(
            "/healthz", headers={"origin": "https://evil.example", **preflight}
        )
        simple = await open_to_one.get("/healthz", headers={"origin": "https://evil.example"})
    assert "access-control-allow-origin" not in nothing.headers
    assert allowed.headers["access-control-allow-origin"] == registered
    assert "access-control-allow-origin" not in foreign.headers
    assert "access-control-allow-origin" not in simple.headers
