"""Status callbacks to a tenant's URL, signed with HMAC-SHA256 over the timestamp and body.

Header `X-Mutualis-Signature: t=<unix>,v1=<hex>` where hex = HMAC(secret, f"{t}.{body}").
Best effort: a failing callback is logged, never blocks or fails a delivery.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any
from urllib.parse import urlparse

import httpx
import structlog

from notifications.domain.errors import InvalidCallback

log = structlog.get_logger("notifications.callbacks")


def check_callback_url(url: str, *, dev_mode: bool) -> str:
    parsed = urlparse(url)
    if parsed.scheme not in ("https", "http") or not parsed.netloc:
        raise InvalidCallback(f"callback URL {url!r} is not an absolute http(s) URL")
    if parsed.scheme != "https" and not dev_mode:
        raise InvalidCallback("callback URLs must use https outside dev mode")
    return url


def sign(secret: str, body: bytes, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


async def post_status(url: str, secret: str, payload: dict[str, Any], timeout_s: float) -> None:
    body = json.dumps(payload, separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/json",
        "X-Mutualis-Signature": sign(secret, body, int(time.time())),
    }
    try:
        async with httpx.AsyncClient(timeout=timeout_s) as client:
            response = await client.post(url, content=body, headers=headers)
        if not response.is_success:
            log.warning("callback.refused", status=response.status_code)
    except httpx.HTTPError as error:
        log.warning("callback.failed", error=type(error).__name__)
