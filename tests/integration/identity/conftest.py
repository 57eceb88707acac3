"""Real identity instances (`python -m identity` subprocesses) on the real 3-DC cluster."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import nats
import pytest
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import AsyncOAuth2Client

from identity.devseed import DEMO_CLIENT_ID, DEMO_PASSWORD, DEMO_REDIRECT_URI
from mutualis_kernel.bus.store import EventStore
from mutualis_kernel.runtime import LocalCluster
from mutualis_kernel.testing.ports import free_port_block

KEY_SECRET = "integration-test-key-secret"


@dataclass
class RunningIdentity:
    url: str
    issuer: str
    process: subprocess.Popen[bytes]


def start_identity(nats_urls: list[str], issuer: str | None, datacenter: str) -> RunningIdentity:
    port = free_port_block(1)
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "MUTUALIS_DEV_MODE": "true",
        "MUTUALIS_NATS_URLS": json.dumps(nats_urls),
        "MUTUALIS_HTTP_PORT": str(port),
        "MUTUALIS_ISSUER": issuer or url,
        "MUTUALIS_DATACENTER": datacenter,
        "MUTUALIS_STREAM_REPLICAS": "3",
        "MUTUALIS_KEY_ENCRYPTION_SECRET": KEY_SECRET,
        "MUTUALIS_LOG_LEVEL": "WARNING",
        "OTEL_SDK_DISABLED": "true",
    }
    process = subprocess.Popen([sys.executable, "-m", "identity"], env=env)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"identity exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/.well-known/openid-configuration", timeout=1).status_code == 200:
                return RunningIdentity(url, issuer or url, process)
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError("identity did not start in time")


def stop_identity(running: RunningIdentity) -> None:
    running.process.terminate()
    try:
        running.process.wait(15)
    except subprocess.TimeoutExpired:
        running.process.kill()
        running.process.wait()


@pytest.fixture(scope="module")
def identity_dc1(nats_cluster: LocalCluster) -> Iterator[RunningIdentity]:
    running = start_identity(nats_cluster.urls_for("dc1"), None, "dc1")
    try:
        yield running
    finally:
        stop_identity(running)


def browser(identity: RunningIdentity, user_agent: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=identity.url, follow_redirects=False, headers={"User-Agent": user_agent}
    )


def demo_client() -> AsyncOAuth2Client:
    """The dev seed's public client (code + PKCE S256), as a relying party configures it."""
    return AsyncOAuth2Client(
        client_id=DEMO_CLIENT_ID,
        redirect_uri=DEMO_REDIRECT_URI,
        scope="openid",
        code_challenge_method="S256",
        token_endpoint_auth_method="none",
    )


async def security_events(cluster: LocalCluster, tenant: str, user_id: str) -> list[Any]:
    """The events of an account's security aggregate (logins, new devices), oldest first."""
    nc = await nats.connect(servers=cluster.client_urls)
    try:
        history = await EventStore(nc.jetstream()).load("identity", tenant, "security", user_id)
    finally:
        await nc.close()
    return [envelope.data for envelope in history.events]


async def log_in(identity: RunningIdentity, http: httpx.AsyncClient, username: str) -> str:
    """A full password login of `username` through the demo client (prompt=login), as a
    browser does it (`http` keeps its cookies); the account's id."""
    token = await log_in_tokens(identity, http, username)
    meta = (await http.get("/.well-known/openid-configuration")).json()
    async with httpx.AsyncClient() as plain:
        info = await plain.get(
            meta["userinfo_endpoint"], headers={"Authorization": f"Bearer {token['access_token']}"}
        )
    return str(info.json()["sub"])


async def log_in_tokens(
    identity: RunningIdentity, http: httpx.AsyncClient, username: str
) -> dict[str, Any]:
    """The same login as `log_in`; the tokens the demo client received."""
    meta = (await http.get("/.well-known/openid-configuration")).json()
    client = demo_client()
    verifier = generate_token(48)
    url, _ = client.create_authorization_url(
        meta["authorization_endpoint"], code_verifier=verifier, prompt="login"
    )
    page = await http.get(url)
    assert page.status_code == 200, page.text
    match = re.search(r'name="request" value="([^"]+)"', page.text)
    assert match, page.text
    answer = await http.post(
        "/login", data={"request": match.group(1), "username": username, "password": DEMO_PASSWORD}
    )
    assert answer.status_code == 303, answer.text
    token = await client.fetch_token(
        meta["token_endpoint"],
        authorization_response=answer.headers["location"],
        code_verifier=verifier,
    )
    await client.aclose()
    return dict(token)
