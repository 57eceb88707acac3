"""Logins in progress, carried by the browser's form rather than stored: sealed, not kept.

Between GET /authorize and the end of the login, the provider must remember the client's
authorization request (client, redirect URI, scopes, PKCE challenge, state, nonce, assurance
level) and, once the password is right, whose login it is. That used to be a KV entry written
at the login page, read at each form post and deleted at the end: three R3 round trips per
login. It is now an opaque token in the form's hidden `request` field: the same data sealed
with AES-256-GCM (authenticated: it cannot be forged or altered; encrypted: the page shows
nothing of it) under a key derived from the key-encryption secret, so every identity instance
can open what another sealed.

What a sealed token allows, and for how long:
- before the password, only what a new GET /authorize gives (the password is still asked): it
  expires after `REQUEST_TTL_S`, as the KV entry did;
- after the password, the one-time-code step for that account: `PASSWORD_CHECKED_TTL_S` (five
  minutes). A token copied from that page still needs a valid, unused one-time code (each
  wrong or replayed code counts against the account's throttle), but it need not be the last
  try of a login, which the deleted KV entry was: hence the short life.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import time
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

#: Seconds a login page stays usable (the KV entry's TTL before).
REQUEST_TTL_S = 1800.0
#: Seconds the one-time-code step stays usable once the password was right.
PASSWORD_CHECKED_TTL_S = 300.0
#: Longer than any sealed request (the browser sends it back in a form field).
MAX_TOKEN_CHARS = 8192
#: How far apart the clocks of two identity instances may be.
_CLOCK_SKEW_S = 60.0
_VERSION = b"\x01"
_NONCE_BYTES = 12


class PendingLogins:
    """Seals and opens the state of logins in progress (see the module docstring)."""

    def __init__(self, secret: str, *, clock: Any = time.time) -> None:
        # A key of its own, derived from the key-encryption secret: never the same key as
        # the one wrapping the signing keys.
        self._aead = AESGCM(
            hmac.new(secret.encode(), b"mutualis identity pending login", hashlib.sha256).digest()
        )
        self._clock = clock

    def seal(self, request: dict[str, Any], user_id: str | None = None) -> str:
        """An opaque token for the form: the authorization request and, after the password,
        the account."""
        body = json.dumps(
            {"request": request, "user_id": user_id, "created": self._clock()},
            separators=(",", ":"),
        ).encode()
        nonce = os.urandom(_NONCE_BYTES)
        sealed = _VERSION + nonce + self._aead.encrypt(nonce, body, _VERSION)
        return base64.urlsafe_b64encode(sealed).rstrip(b"=").decode()

    def open(self, token: str) -> tuple[dict[str, Any], str | None] | None:
        """The request and account of a token this provider sealed and that is still valid;
        None for anything else (altered, foreign, expired, malformed)."""
        if not token or len(token) > MAX_TOKEN_CHARS:
            return None
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (ValueError, binascii.Error):
            return None
        if len(raw) <= 1 + _NONCE_BYTES or raw[:1] != _VERSION:
            return None
        nonce, sealed = raw[1 : 1 + _NONCE_BYTES], raw[1 + _NONCE_BYTES :]
        try:
            state = json.loads(self._aead.decrypt(nonce, sealed, _VERSION))
        except (InvalidTag, ValueError):
            return None
        user_id = state.get("user_id")
        ttl = PASSWORD_CHECKED_TTL_S if user_id else REQUEST_TTL_S
        age = self._clock() - float(state.get("created", 0))
        # A little before "now" is another instance's clock running ahead of this one's.
        if not -_CLOCK_SKEW_S <= age <= ttl:
            return None
        return state["request"], user_id
