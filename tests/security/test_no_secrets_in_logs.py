"""No secret ever reaches a log file of the running platform.

The whole platform is started the way a developer starts it (`mutualis up --detach` on free
loopback ports), one folder's whole journey is run through the public APIs (logins with
passwords and one-time codes, step-up, signature, archive, emails), plus the token requests
that carry secrets the most directly: a service client's client-credentials grant (Basic
auth), a refresh, and a failed client authentication. Then every file under
`<run-dir>/logs/` is read and must contain none of the dev secrets, nor any token obtained.
"""

from __future__ import annotations

import base64
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from identity.devseed import DEMO_CLIENT_ID, DEMO_PASSWORD, credentials
from mutualis_cli.demo import platform_urls
from mutualis_cli.journey.login import browser_login
from mutualis_cli.journey.scenario import Journey, PlatformUrls
from mutualis_cli.ports import free_up_options
from mutualis_cli.rundir import load_state
from mutualis_cli.wiring import DEV_KEY_ENCRYPTION_SECRET, DEV_TOKEN_PIN, DEV_TOKEN_SO_PIN

pytestmark = pytest.mark.slow

TENANT = "bordeaux"
#: A wrong secret a caller might send: a failed authentication must not log it either.
WRONG_SECRET = "not-the-secret-5f0c9d1e7a"


@dataclass
class Platform:
    run_dir: Path
    urls: PlatformUrls


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    run_dir = tmp_path_factory.mktemp("platform") / "run"
    cli = [sys.executable, "-m", "mutualis_cli.main"]
    args = [*cli, "up", "--detach", "--run-dir", str(run_dir), *free_up_options()]
    started = subprocess.run(args, capture_output=True, text=True, timeout=300)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        state = load_state(run_dir)
        assert state is not None
        yield Platform(run_dir, platform_urls(state))
    finally:
        subprocess.run([*cli, "down", "--run-dir", str(run_dir)], capture_output=True, timeout=120)


def dev_secrets() -> dict[str, str]:
    """Every dev secret, named: demo password, client secrets, TOTP secrets, PINs, key secret."""
    found = {
        "demo password": DEMO_PASSWORD,
        "SoftHSM user PIN": DEV_TOKEN_PIN,
        "SoftHSM SO PIN": DEV_TOKEN_SO_PIN,
        "identity key encryption secret": DEV_KEY_ENCRYPTION_SECRET,
        "a wrong client secret": WRONG_SECRET,
    }
    for row in credentials():
        if row.get("client_secret"):
            found[f"client secret of {row['client_id']}"] = row["client_secret"]
            basic = f"{row['client_id']}:{row['client_secret']}".encode()
            found[f"Basic credentials of {row['client_id']}"] = base64.b64encode(basic).decode()
        if row.get("totp_secret"):
            found[f"TOTP secret of {row['username']}"] = row["totp_secret"]
    return found


def service_client() -> tuple[str, str]:
    for row in credentials():
        if row["type"] == "client" and row.get("client_secret"):
            return row["client_id"], row["client_secret"]
    raise AssertionError("the dev seed has no confidential client")


async def secrets_exercised(urls: PlatformUrls, out: Path) -> dict[str, str]:
    """Run the journey and the token requests; the tokens obtained, named."""
    from mutualis_trust.testing import minimal_pdf

    result = await Journey(urls, TENANT, out_dir=out).run(minimal_pdf("Arrêté sans fuite"))
    assert result.folder_status, result.steps
    tokens: dict[str, str] = {}
    client_id, secret = service_client()
    async with httpx.AsyncClient(timeout=60) as http:
        login = await browser_login(http, urls.identity, f"agent.{TENANT}", DEMO_PASSWORD)
        tokens["access token"] = login.access_token
        if login.id_token:
            tokens["ID token"] = login.id_token
        assert login.refresh_token
        tokens["refresh token"] = login.refresh_token
        refreshed = await http.post(
            f"{urls.identity}/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": login.refresh_token,
                "client_id": DEMO_CLIENT_ID,
            },
        )
        assert refreshed.status_code == 200, refreshed.text
        tokens["refreshed access token"] = refreshed.json()["access_token"]
        tokens["second refresh token"] = refreshed.json()["refresh_token"]
        granted = await http.post(
            f"{urls.identity}/token",
            data={"grant_type": "client_credentials"},
            auth=(client_id, secret),
        )
        assert granted.status_code == 200, granted.text
        tokens["service access token"] = granted.json()["access_token"]
        refused = await http.post(
            f"{urls.identity}/token",
            data={"grant_type": "client_credentials"},
            auth=(client_id, WRONG_SECRET),
        )
        assert refused.status_code == 401
        # The service token, used: services log their requests, never the header.
        for base in (urls.parapheur, urls.archive, urls.notifications):
            await http.get(
                f"{base}/v1/me", headers={"Authorization": f"Bearer {tokens['access token']}"}
            )
    return tokens


async def test_no_log_file_contains_a_secret_or_a_token(platform: Platform, tmp_path: Path) -> None:
    tokens = await secrets_exercised(platform.urls, tmp_path)
    logs = sorted(p for p in (platform.run_dir / "logs").rglob("*") if p.is_file())
    for service in ("identity", "parapheur", "archive", "notifications"):
        written = [p for p in logs if p.name.startswith(f"{service}@") and p.stat().st_size]
        assert written, f"{service} wrote no log: the scan would prove nothing"
    searched = {**dev_secrets(), **tokens}
    # The JWT's signature alone would be enough to replay nothing, but its header+payload is
    # logged by nobody either: look for the whole token and for its signature part.
    for name, token in tokens.items():
        if token.count(".") == 2:
            searched[f"signature of the {name}"] = token.rsplit(".", 1)[1]
    leaks = []
    for log in logs:
        text = log.read_text(errors="replace")
        leaks += [f"{log.name}: {name}" for name, value in searched.items() if value in text]
    assert not leaks, "\n".join(leaks)
