"""Credentials: the password hashing policy, TOTP, PKCE and the hashing of bearer secrets.

Pure computation (no I/O). argon2id with OWASP's parameters protects passwords, which people
choose and reuse; high-entropy secrets we generate ourselves (client secrets, refresh tokens,
codes) only need SHA-256, which keeps the client-credentials grant cheap.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

import pyotp
from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

#: OWASP Password Storage Cheat Sheet, argon2id: m=19 MiB, t=2, p=1.
OWASP_MEMORY_KIB = 19 * 1024
OWASP_TIME_COST = 2
OWASP_PARALLELISM = 1


@dataclass(frozen=True)
class PasswordPolicy:
    memory_kib: int = OWASP_MEMORY_KIB
    time_cost: int = OWASP_TIME_COST
    parallelism: int = OWASP_PARALLELISM
    min_length: int = 12

    def hasher(self) -> PasswordHasher:
        return PasswordHasher(
            time_cost=self.time_cost,
            memory_cost=self.memory_kib,
            parallelism=self.parallelism,
            type=Type.ID,
        )


class Passwords:
    """Hashes and verifies passwords under one policy; rehash when the policy got stronger."""

    def __init__(self, policy: PasswordPolicy | None = None) -> None:
        self.policy = policy or PasswordPolicy()
        self._hasher = self.policy.hasher()
        # Verified when the account does not exist, so timing does not reveal that.
        self._decoy = self._hasher.hash(secrets.token_urlsafe(16))

    def hash(self, password: str) -> str:
        if len(password) < self.policy.min_length:
            raise ValueError(f"a password has at least {self.policy.min_length} characters")
        return self._hasher.hash(password)

    def verify(self, stored_hash: str | None, password: str) -> bool:
        try:
            return self._hasher.verify(stored_hash or self._decoy, password) and bool(stored_hash)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored_hash: str) -> bool:
        return self._hasher.check_needs_rehash(stored_hash)


def new_totp_secret() -> str:
    return pyotp.random_base32()


def totp_provisioning_uri(secret: str, username: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name="Mutualis")


def totp_timestep(secret: str, code: str, at: float) -> int | None:
    """The time step `code` is valid for (±1 step of drift), or None.

    The caller records the step so the same code cannot be replayed (RFC 6238 §5.2).
    """
    totp = pyotp.TOTP(secret)
    code = code.strip().replace(" ", "")
    if not code.isdigit() or len(code) != totp.digits:
        return None
    for drift in (0, -1, 1):
        step_time = at + drift * totp.interval
        if hmac.compare_digest(totp.at(step_time), code):
            return int(step_time // totp.interval)
    return None


def pkce_s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


_VERIFIER_CHARS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def pkce_matches(challenge: str, verifier: str | None) -> bool:
    """RFC 7636 §4.1: 43-128 unreserved characters, then S256 compared in constant time."""
    if not verifier or not 43 <= len(verifier) <= 128 or not set(verifier) <= _VERIFIER_CHARS:
        return False
    return hmac.compare_digest(pkce_s256(verifier), challenge)


def valid_challenge(challenge: str | None) -> bool:
    return (
        bool(challenge) and len(challenge or "") == 43 and set(challenge or "") <= _VERIFIER_CHARS
    )


def new_secret(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)


def secret_digest(secret: str) -> str:
    """Stored form of a generated secret (client secret, refresh token, code): SHA-256 hex."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def secret_matches(digest: str | None, secret: str) -> bool:
    return digest is not None and hmac.compare_digest(digest, secret_digest(secret))
