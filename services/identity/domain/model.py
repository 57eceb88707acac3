"""Users, clients, roles and assurance levels: the aggregates and the rules that guard them.

Aggregates *record* events in `pending_events`; the service layer saves them and publishes
what they recorded. Nothing here performs I/O.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from identity.domain.errors import InvalidCommand
from identity.domain.events import (
    ClientRegistered,
    RoleGranted,
    RoleRevoked,
    UserErased,
    UserKind,
    UserRegistered,
    UserUpdated,
)
from mutualis_kernel.events import Event

LOA_LOW = "urn:mutualis:loa:low"
LOA_SUBSTANTIAL = "urn:mutualis:loa:substantial"
ACR_VALUES = (LOA_LOW, LOA_SUBSTANTIAL)
_ACR_RANK = {LOA_LOW: 1, LOA_SUBSTANTIAL: 2}

#: The roles an agent can hold; `platform-admin` is the SRE role valid across tenants.
ROLES = ("agent", "signatory", "archivist", "tenant-admin", "platform-admin")
ADMIN_ROLES = ("tenant-admin", "platform-admin")

AUDIENCES = (
    "mutualis:identity",
    "mutualis:parapheur",
    "mutualis:archive",
    "mutualis:notifications",
)
STANDARD_SCOPES = ("openid", "profile", "email", "offline_access")
GRANT_TYPES = ("authorization_code", "refresh_token", "client_credentials")


def acr_rank(acr: str | None) -> int:
    return _ACR_RANK.get(acr or "", 0)


def acr_for(amr: tuple[str, ...]) -> str:
    """Password alone is low; a second factor makes the session substantial."""
    return LOA_SUBSTANTIAL if "otp" in amr else LOA_LOW


def strongest_requested(acr_values: str | None) -> str | None:
    """The highest level among the space-separated `acr_values` we know, if any."""
    known = [v for v in (acr_values or "").split() if v in _ACR_RANK]
    return max(known, key=acr_rank) if known else None


def new_id() -> str:
    return secrets.token_hex(16)


@dataclass
class User:
    """A citizen (territory-wide, `tenant` = commune of residence) or an agent of a tenant."""

    id: str
    username: str
    kind: UserKind
    tenant: str
    email: str | None
    name: str
    password_hash: str
    roles: list[str] = field(default_factory=list)
    totp_secret: str | None = None
    disabled: bool = False
    pending_events: list[Event] = field(default_factory=list, repr=False)

    @classmethod
    def register(
        cls,
        *,
        username: str,
        kind: UserKind,
        tenant: str,
        email: str | None,
        name: str,
        password_hash: str,
        roles: tuple[str, ...] = (),
        totp_secret: str | None = None,
        user_id: str | None = None,
        by: str | None = None,
    ) -> User:
        username = normalise_username(username)
        if kind == "citizen" and roles:
            raise InvalidCommand("citizens hold no roles")
        for role in roles:
            check_role(role)
        user = cls(
            id=user_id or new_id(),
            username=username,
            kind=kind,
            tenant=tenant,
            email=email,
            name=name,
            password_hash=password_hash,
            roles=sorted(set(roles)),
            totp_secret=totp_secret,
        )
        user.pending_events.append(
            UserRegistered(
                user_id=user.id,
                tenant=tenant,
                kind=kind,
                roles=tuple(user.roles),
                email=email,
                name=name,
                username=username,
                by=by,
            )
        )
        return user

    def grant(self, role: str, by: str | None = None) -> None:
        check_role(role)
        if self.kind != "agent":
            raise InvalidCommand("only agents hold roles")
        if role in self.roles:
            return
        self.roles = sorted({*self.roles, role})
        self.pending_events.append(
            RoleGranted(
                user_id=self.id, tenant=self.tenant, role=role, roles=tuple(self.roles), by=by
            )
        )

    def revoke(self, role: str, by: str | None = None) -> None:
        check_role(role)
        if role not in self.roles:
            return
        self.roles = [r for r in self.roles if r != role]
        self.pending_events.append(
            RoleRevoked(
                user_id=self.id, tenant=self.tenant, role=role, roles=tuple(self.roles), by=by
            )
        )

    def set_disabled(self, disabled: bool, by: str | None = None) -> None:
        if self.disabled == disabled:
            return
        self.disabled = disabled
        self.pending_events.append(
            UserUpdated(
                user_id=self.id,
                tenant=self.tenant,
                disabled=disabled,
                changed=("disabled",),
                by=by,
            )
        )

    def erase(self, by: str | None = None) -> None:
        self.pending_events.append(
            UserErased(user_id=self.id, tenant=self.tenant, kind=self.kind, by=by)
        )

    def export(self) -> dict[str, object]:
        """What the person may see about themselves (RGPD art. 15/20); never the secrets."""
        return {
            "id": self.id,
            "username": self.username,
            "kind": self.kind,
            "tenant": self.tenant,
            "email": self.email,
            "name": self.name,
            "roles": list(self.roles),
            "second_factor": self.totp_secret is not None,
            "disabled": self.disabled,
        }


def normalise_username(username: str) -> str:
    value = username.strip().lower()
    if not value or len(value) > 254 or any(c.isspace() for c in value):
        raise InvalidCommand("a username is 1-254 characters without spaces")
    return value


def check_role(role: str) -> None:
    if role not in ROLES:
        raise InvalidCommand(f"unknown role {role!r} (known: {', '.join(ROLES)})")


ClientType = Literal["confidential", "public"]


@dataclass
class Client:
    """An application allowed to ask for tokens: a commune's site, an app, a service."""

    client_id: str
    tenant: str
    client_type: ClientType
    name: str
    redirect_uris: list[str] = field(default_factory=list)
    post_logout_redirect_uris: list[str] = field(default_factory=list)
    scopes: list[str] = field(default_factory=lambda: list(STANDARD_SCOPES))
    grant_types: list[str] = field(default_factory=lambda: ["authorization_code", "refresh_token"])
    audiences: list[str] = field(default_factory=lambda: list(AUDIENCES))
    #: Roles carried by client_credentials tokens (a service acting for its tenant).
    roles: list[str] = field(default_factory=list)
    secret_hash: str | None = None
    pending_events: list[Event] = field(default_factory=list, repr=False)

    @property
    def confidential(self) -> bool:
        return self.client_type == "confidential"

    @classmethod
    def register(
        cls,
        *,
        client_id: str,
        tenant: str,
        client_type: ClientType,
        name: str,
        redirect_uris: list[str],
        post_logout_redirect_uris: list[str] | None = None,
        scopes: list[str] | None = None,
        grant_types: list[str] | None = None,
        audiences: list[str] | None = None,
        roles: list[str] | None = None,
        secret_hash: str | None = None,
        dev_mode: bool = False,
        by: str | None = None,
    ) -> Client:
        grants = grant_types or ["authorization_code", "refresh_token"]
        for grant in grants:
            if grant not in GRANT_TYPES:
                raise InvalidCommand(f"unsupported grant type {grant!r}")
        if client_type == "public" and "client_credentials" in grants:
            raise InvalidCommand("a public client cannot use client_credentials")
        if client_type == "confidential" and secret_hash is None:
            raise InvalidCommand("a confidential client needs a secret")
        if "authorization_code" in grants and not redirect_uris:
            raise InvalidCommand("the authorization code grant needs at least one redirect URI")
        for uri in [*redirect_uris, *(post_logout_redirect_uris or [])]:
            check_redirect_uri(uri, dev_mode=dev_mode)
        for audience in audiences or []:
            if audience not in AUDIENCES:
                raise InvalidCommand(f"unknown audience {audience!r}")
        for role in roles or []:
            check_role(role)
        client = cls(
            client_id=client_id,
            tenant=tenant,
            client_type=client_type,
            name=name,
            redirect_uris=list(redirect_uris),
            post_logout_redirect_uris=list(post_logout_redirect_uris or []),
            scopes=list(scopes or STANDARD_SCOPES),
            grant_types=list(grants),
            audiences=list(audiences or AUDIENCES),
            roles=list(roles or []),
            secret_hash=secret_hash,
        )
        client.pending_events.append(
            ClientRegistered(
                client_id=client_id,
                tenant=tenant,
                confidential=client.confidential,
                redirect_uris=tuple(client.redirect_uris),
                scopes=tuple(client.scopes),
                grant_types=tuple(client.grant_types),
                name=name,
                post_logout_redirect_uris=tuple(client.post_logout_redirect_uris),
                audiences=tuple(client.audiences),
                roles=tuple(client.roles),
                by=by,
            )
        )
        return client

    def redirect_uri_allowed(self, uri: str | None) -> bool:
        """Exact string comparison (RFC 9700 §2.1): no prefix, no wildcard, no normalising."""
        return uri is not None and uri in self.redirect_uris

    def granted_scopes(self, requested: str | None) -> list[str]:
        """The requested scopes this client may have; none requested means all it may have."""
        wanted = (requested or "").split()
        if not wanted:
            return list(self.scopes)
        unknown = [s for s in wanted if s not in self.scopes]
        if unknown:
            raise InvalidCommand(f"scopes not allowed for this client: {' '.join(unknown)}")
        return list(dict.fromkeys(wanted))


def check_redirect_uri(uri: str, *, dev_mode: bool) -> None:
    """HTTPS only, except loopback (RFC 8252 native apps) and dev mode; never a fragment."""
    parts = urlsplit(uri)
    if parts.fragment or not parts.netloc:
        raise InvalidCommand(f"redirect URI {uri!r} must be absolute and without fragment")
    loopback = parts.hostname in ("127.0.0.1", "::1", "localhost")
    if parts.scheme == "https" or (parts.scheme == "http" and (loopback or dev_mode)):
        return
    raise InvalidCommand(f"redirect URI {uri!r} must use https (http only on loopback)")
