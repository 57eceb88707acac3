"""Domain errors, translated to HTTP statuses or OAuth error codes at the edges."""

from __future__ import annotations


class IdentityError(Exception):
    """Base of every refusal the identity domain makes."""


class InvalidCommand(IdentityError):
    """The order itself is wrong (unknown role, bad redirect URI, kind mismatch...)."""


class NotFound(IdentityError):
    pass


class AlreadyExists(IdentityError):
    pass


class Forbidden(IdentityError):
    """The caller may not act on this tenant or this account."""


class OAuthError(IdentityError):
    """An RFC 6749 error: `error` is the registered code, `description` is for developers."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status
