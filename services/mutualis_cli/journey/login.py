"""Logging in through the identity service the way a browser does.

Authorization code flow with PKCE (S256): GET /authorize, fill the login form, the one-time
code form when the client asks for a substantial assurance level, follow the redirect to the
registered redirect URI, exchange the code at /token. No JavaScript, so plain HTTP is enough;
the forms are parsed from the HTML the person would see.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import secrets
import time
from contextvars import ContextVar
from dataclasses import dataclass
from html import unescape
from urllib.parse import parse_qs, urlencode, urlparse

import httpx
import pyotp

DEMO_CLIENT_ID = "mutualis-demo"
DEMO_REDIRECT_URI = "http://127.0.0.1:8765/callback"
LOA_SUBSTANTIAL = "urn:mutualis:loa:substantial"

_HIDDEN_REQUEST = re.compile(r'name="request"\s+value="([^"]+)"')
_ERROR = re.compile(r'role="alert"[^>]*>(.*?)<', re.S)


class LoginFailed(RuntimeError):
    pass


#: Where the running task notes its waits for a fresh one-time code, as (start, end) in
#: time.monotonic(): a person waiting for the next TOTP window is the workload's own pace,
#: which a drill must not count as the platform stalling. None: nobody is listening.
code_waits: ContextVar[list[tuple[float, float]] | None] = ContextVar("code_waits", default=None)


@dataclass(frozen=True)
class Tokens:
    access_token: str
    id_token: str | None
    refresh_token: str | None
    expires_in: int


class _OneTimeCodes:
    """The TOTP codes this process has typed, per secret: a code works once (identity refuses
    a replay and counts it as a failed attempt, which throttles the account after a few), so
    concurrent journeys logging in as one person take turns, one code per 30 s window, as
    the person would."""

    def __init__(self) -> None:
        self._last_step: dict[str, int] = {}
        self._turns: dict[str, asyncio.Lock] = {}

    async def next_code(self, secret: str) -> str:
        totp = pyotp.TOTP(secret)
        began = time.monotonic()
        turn = self._turns.setdefault(secret, asyncio.Lock())
        waited = turn.locked()  # another journey of the same person types its code first
        try:
            async with turn:
                step = int(time.time() // totp.interval)
                used = self._last_step.get(secret)
                if used is not None and step <= used:
                    waited = True
                    await asyncio.sleep((used + 1) * totp.interval - time.time() + 0.2)
                    step = int(time.time() // totp.interval)
                self._last_step[secret] = step
                return str(totp.at(step * totp.interval))
        finally:
            waits = code_waits.get()
            if waited and waits is not None:
                waits.append((began, time.monotonic()))


_codes = _OneTimeCodes()


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    return verifier, challenge.rstrip(b"=").decode()


def _request_id(html: str) -> str:
    found = _HIDDEN_REQUEST.search(html)
    if not found:
        error = _ERROR.search(html)
        raise LoginFailed(unescape(error.group(1).strip()) if error else "no login form")
    return unescape(found.group(1))


async def browser_login(
    http: httpx.AsyncClient,
    issuer: str,
    username: str,
    password: str,
    *,
    totp_secret: str | None = None,
    acr: str | None = None,
    client_id: str = DEMO_CLIENT_ID,
    redirect_uri: str = DEMO_REDIRECT_URI,
    scope: str = "openid profile",
) -> Tokens:
    """Log a person in and return their tokens. `http` keeps the session cookie, so a second
    call with `acr=substantial` is a step-up: only the one-time code is asked for."""
    verifier, challenge = _pkce()
    state = secrets.token_urlsafe(16)
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": scope,
        "state": state,
        "nonce": secrets.token_urlsafe(16),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    if acr:
        params["acr_values"] = acr
    response = await http.get(f"{issuer}/authorize?{urlencode(params)}")
    if response.status_code == 200 and 'name="password"' in response.text:
        response = await http.post(
            f"{issuer}/login",
            data={
                "request": _request_id(response.text),
                "username": username,
                "password": password,
            },
        )
    if response.status_code in (200, 400) and 'name="code"' in response.text:
        if totp_secret is None:
            raise LoginFailed(f"{username} must give a one-time code")
        for _ in range(3):
            response = await http.post(
                f"{issuer}/login/otp",
                data={
                    "request": _request_id(response.text),
                    "code": await _codes.next_code(totp_secret),
                },
            )
            if 'name="code"' not in response.text:
                break
            # Each code works once: someone outside this process, logged in as the same
            # person, used this one. A person would wait for the next code; so do we.
    if response.status_code not in (302, 303):
        _request_id(response.text)  # raises with the page's error message
        raise LoginFailed(f"login of {username} ended with HTTP {response.status_code}")
    location = response.headers["location"]
    query = parse_qs(urlparse(location).query)
    if query.get("state") != [state] or "code" not in query:
        raise LoginFailed(f"unexpected redirect {location}")
    token = await http.post(
        f"{issuer}/token",
        data={
            "grant_type": "authorization_code",
            "code": query["code"][0],
            "redirect_uri": redirect_uri,
            "client_id": client_id,
            "code_verifier": verifier,
        },
    )
    if token.status_code != 200:
        raise LoginFailed(f"code exchange refused: {token.text}")
    body = token.json()
    return Tokens(
        access_token=body["access_token"],
        id_token=body.get("id_token"),
        refresh_token=body.get("refresh_token"),
        expires_in=int(body.get("expires_in", 0)),
    )


async def service_token(
    http: httpx.AsyncClient, issuer: str, client_id: str, client_secret: str, scope: str = ""
) -> str:
    """A client-credentials access token, as a commune's application gets one."""
    data = {"grant_type": "client_credentials"}
    if scope:
        data["scope"] = scope
    response = await http.post(f"{issuer}/token", data=data, auth=(client_id, client_secret))
    if response.status_code != 200:
        raise LoginFailed(f"client credentials refused for {client_id}: {response.text}")
    token: str = response.json()["access_token"]
    return token
