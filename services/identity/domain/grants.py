"""Authorization codes, refresh-token families and login throttling: the rules, no storage.

- A code lives 60 s and is exchanged once; a second exchange is an attack (RFC 9700 §4.5).
- Refresh tokens rotate: each use returns a new token of the same family and marks the old
  one used. Presenting a used token again means it leaked: the whole family is revoked
  (RFC 9700 §4.14.2).
- Failed logins are counted per account and per address over a window; past a threshold the
  attempt is refused before the password is even checked, with the same message as a wrong
  password so that the refusal reveals nothing about the account.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel

CODE_LIFETIME_S = 60


class AuthorizationCode(BaseModel):
    """What a code stands for, until it is exchanged (stored under the code's digest)."""

    client_id: str
    redirect_uri: str
    user_id: str
    scopes: list[str]
    code_challenge: str
    nonce: str | None = None
    acr: str
    amr: list[str]
    auth_time: int
    session_id: str | None = None
    issued_at: float
    used: bool = False
    #: The refresh family issued at the exchange, revoked if the code is replayed.
    family_id: str | None = None

    def expired(self, now: float) -> bool:
        return now > self.issued_at + CODE_LIFETIME_S


class RefreshToken(BaseModel):
    """One refresh token of a family (stored under its digest)."""

    family_id: str
    client_id: str
    user_id: str
    scopes: list[str]
    acr: str
    amr: list[str]
    auth_time: int
    expires_at: float
    status: Literal["active", "used"] = "active"


class RefreshFamily(BaseModel):
    family_id: str
    user_id: str
    client_id: str
    revoked: bool = False


RefreshDecision = Literal["rotate", "reuse_detected", "revoked", "expired", "wrong_client"]


def decide_refresh(
    token: RefreshToken, family: RefreshFamily | None, client_id: str, now: float
) -> RefreshDecision:
    if token.client_id != client_id:
        return "wrong_client"
    if family is None or family.revoked:
        return "revoked"
    if token.status == "used":
        return "reuse_detected"
    if now > token.expires_at:
        return "expired"
    return "rotate"


@dataclass(frozen=True)
class ThrottlePolicy:
    """Failures allowed within `window_s` before further attempts are refused."""

    per_account: int = 5
    per_address: int = 20
    window_s: float = 900.0


@dataclass
class FailureCount:
    failures: int = 0
    timestamps: list[float] = field(default_factory=list)

    def recent(self, now: float, window_s: float) -> int:
        return sum(1 for t in self.timestamps if now - t < window_s)

    def record(self, now: float, window_s: float, keep: int = 50) -> None:
        kept = [t for t in self.timestamps if now - t < window_s][-keep:]
        self.timestamps = [*kept, now]
        self.failures = len(self.timestamps)


def is_throttled(
    policy: ThrottlePolicy, account: FailureCount, address: FailureCount, now: float
) -> bool:
    return (
        account.recent(now, policy.window_s) >= policy.per_account
        or address.recent(now, policy.window_s) >= policy.per_address
    )
