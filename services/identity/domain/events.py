"""The identity service's events, published on `evt.identity.<tenant>.<aggregate>.<id>.>`.

Payloads carry only what consumers need: ids, tenant, kind, roles. Personal data (email,
name) appears only where a consumer must act on it, and each docstring says so; the erasure
event carries none, so that erasing a person does not leave their data in the stream.
"""

from __future__ import annotations

from typing import Literal

from mutualis_kernel.events import Event, domain_event

UserKind = Literal["citizen", "agent"]


@domain_event("identity", "user.registered", aggregate="user")
class UserRegistered(Event):
    """An account was created. Carries the email and display name because notifications
    sends the welcome message, and the username because identity's own account projection
    is rebuilt from this stream; consumers must not copy them elsewhere. Credentials (the
    password hash, the TOTP secret) are never in an event: they live in the
    `identity_credentials` KV bucket, which erasure can really empty."""

    user_id: str
    tenant: str
    kind: UserKind
    roles: tuple[str, ...] = ()
    email: str | None = None
    name: str | None = None
    #: Who created the account (an administrator's id); None for the dev seed.
    by: str | None = None
    username: str | None = None


@domain_event("identity", "user.updated", aggregate="user")
class UserUpdated(Event):
    """An account changed (disabled, enabled, commune of residence). No personal data."""

    user_id: str
    tenant: str
    disabled: bool
    changed: tuple[str, ...] = ()
    #: Who changed it (an administrator's id).
    by: str | None = None


@domain_event("identity", "user.erased", aggregate="user")
class UserErased(Event):
    """A person's account was deleted (GDPR erasure): every service must erase or anonymise
    what it holds about `user_id`. Carries no personal data on purpose."""

    user_id: str
    tenant: str
    kind: UserKind
    #: Who asked for the erasure: the person themselves or an administrator.
    by: str | None = None


@domain_event("identity", "role.granted", aggregate="user")
class RoleGranted(Event):
    """An agent received a role in its tenant."""

    user_id: str
    tenant: str
    role: str
    roles: tuple[str, ...]
    by: str | None = None


@domain_event("identity", "role.revoked", aggregate="user")
class RoleRevoked(Event):
    """An agent lost a role in its tenant."""

    user_id: str
    tenant: str
    role: str
    roles: tuple[str, ...]
    by: str | None = None


@domain_event("identity", "client.registered", aggregate="client")
class ClientRegistered(Event):
    """An application was registered as an OAuth client of the tenant (never its secret,
    nor its digest: those live in the `identity_credentials` KV bucket)."""

    client_id: str
    tenant: str
    confidential: bool
    redirect_uris: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ()
    grant_types: tuple[str, ...] = ()
    name: str | None = None
    post_logout_redirect_uris: tuple[str, ...] = ()
    audiences: tuple[str, ...] = ()
    #: Who registered the application (an administrator's id); None for the dev seed.
    by: str | None = None
    roles: tuple[str, ...] = ()


#: Security facts (logins, refresh-token reuse) form their own aggregate, keyed by the user id:
#: they record what happened and change nothing in the account, so they must not move the
#: account's version (an administrator's change would conflict with every login) nor cost
#: the projector a write per login.
SECURITY = "security"


@domain_event("identity", "login.succeeded", aggregate=SECURITY)
class LoginSucceeded(Event):
    """Security event: a person authenticated (no address or credential in the payload)."""

    user_id: str
    tenant: str
    acr: str
    amr: tuple[str, ...]
    client_id: str | None = None


@domain_event("identity", "login.failed", aggregate=SECURITY)
class LoginFailed(Event):
    """Security event: a login attempt failed. `user_id` is `unknown` (tenant: the
    metropolis) when the identifier matches no account."""

    user_id: str
    tenant: str
    reason: Literal["bad_credentials", "bad_otp", "throttled", "disabled"]


@domain_event("identity", "refresh.reused", aggregate=SECURITY)
class RefreshReused(Event):
    """Security event: a used refresh token was presented again; its family was revoked."""

    user_id: str
    tenant: str
    client_id: str
    family_id: str


@domain_event("identity", "device.first_seen", aggregate=SECURITY)
class DeviceFirstSeen(Event):
    """Security event: a person logged in from a device (a browser) never seen before for
    their account, which notifications tells them about. Carries only the browser and OS
    families (`Firefox`, `Windows`, or `unknown`), never the User-Agent, an address or the
    device cookie (see identity.domain.devices for what identifies a device)."""

    user_id: str
    tenant: str
    browser: str
    os: str
    client_id: str | None = None
