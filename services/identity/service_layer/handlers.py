"""Account and client use cases: load, decide (the aggregate records events), save, publish.

Saving is a compare-and-set on the KV revision; the recorded events are then published to
`IDENTITY_EVENTS` with the tenant in their envelope. A conflict surfaces as `StaleWrite`
(HTTP 409) and the caller retries with fresh state.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from identity.adapters.repository import Stores
from identity.domain import commands
from identity.domain.errors import InvalidCommand, NotFound
from identity.domain.model import Client, User
from identity.domain.security import Passwords, new_secret, secret_digest
from mutualis_kernel.bus.publisher import EventPublisher
from mutualis_kernel.events import Event
from mutualis_kernel.tenants import TenantDirectory


@dataclass
class Deps:
    stores: Stores
    publisher: EventPublisher
    passwords: Passwords
    tenants: TenantDirectory
    dev_mode: bool = False


async def publish_all(deps: Deps, events: list[Event], aggregate_id: str) -> None:
    for event in events:
        tenant = getattr(event, "tenant")  # noqa: B009 - every identity event has one
        await deps.publisher.publish(event, tenant=tenant, aggregate_id=aggregate_id)
    events.clear()


def _check_tenant(deps: Deps, tenant: str) -> None:
    if tenant not in deps.tenants:
        raise InvalidCommand(f"unknown tenant {tenant!r}")


async def create_user(command: commands.CreateUser, deps: Deps, by: str | None = None) -> User:
    _check_tenant(deps, command.tenant)
    try:
        password_hash = deps.passwords.hash(command.password)
    except ValueError as error:
        raise InvalidCommand(str(error)) from None
    user = User.register(
        username=command.username,
        kind=command.kind,
        tenant=command.tenant,
        email=command.email,
        name=command.name,
        password_hash=password_hash,
        roles=tuple(command.roles),
        totp_secret=command.totp_secret,
    )
    await deps.stores.users.add(user)
    await publish_all(deps, user.pending_events, user.id)
    return user


async def _change_user(
    deps: Deps, user_id: str, tenant: str, change: Callable[[User], None]
) -> User:
    user, revision = await deps.stores.users.get(user_id)
    if user.tenant != tenant:
        # Seen from another tenant, the account does not exist.
        raise NotFound(f"no user {user_id} in {tenant}")
    change(user)
    if user.pending_events:
        await deps.stores.users.save(user, revision)
        await publish_all(deps, user.pending_events, user.id)
    return user


async def disable_user(command: commands.DisableUser, deps: Deps, by: str | None = None) -> User:
    return await _change_user(
        deps, command.user_id, command.tenant, lambda u: u.set_disabled(command.disabled)
    )


async def grant_role(command: commands.GrantRole, deps: Deps, by: str | None = None) -> User:
    return await _change_user(
        deps, command.user_id, command.tenant, lambda u: u.grant(command.role, by)
    )


async def revoke_role(command: commands.RevokeRole, deps: Deps, by: str | None = None) -> User:
    return await _change_user(
        deps, command.user_id, command.tenant, lambda u: u.revoke(command.role, by)
    )


async def register_client(
    command: commands.RegisterClient, deps: Deps, by: str | None = None
) -> tuple[Client, str | None]:
    """The client, and its secret in clear (shown once; only its digest is kept)."""
    _check_tenant(deps, command.tenant)
    secret: str | None = None
    if command.client_type == "confidential":
        secret = command.client_secret or new_secret()
    client = Client.register(
        client_id=command.client_id,
        tenant=command.tenant,
        client_type=command.client_type,
        name=command.name,
        redirect_uris=command.redirect_uris,
        post_logout_redirect_uris=command.post_logout_redirect_uris,
        scopes=command.scopes,
        grant_types=command.grant_types,
        audiences=command.audiences,
        roles=command.roles,
        secret_hash=secret_digest(secret) if secret else None,
        dev_mode=deps.dev_mode,
    )
    await deps.stores.clients.add(client)
    await publish_all(deps, client.pending_events, client.client_id)
    return client, secret


async def erase_user(command: commands.EraseUser, deps: Deps, by: str | None = None) -> None:
    user, _ = await deps.stores.users.get(command.user_id)
    user.erase()
    await deps.stores.users.remove(user)
    await publish_all(deps, user.pending_events, user.id)


Handler = Callable[[Any, Deps, str | None], Awaitable[Any]]

HANDLERS: dict[type[Any], Handler] = {
    commands.CreateUser: create_user,
    commands.DisableUser: disable_user,
    commands.GrantRole: grant_role,
    commands.RevokeRole: revoke_role,
    commands.RegisterClient: register_client,
    commands.EraseUser: erase_user,
}
