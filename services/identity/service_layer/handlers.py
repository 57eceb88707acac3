"""Account and client use cases: the event append is the write.

A command loads the aggregate's state (the KV projection as a snapshot, plus whatever the
stream holds after it), lets the aggregate decide and record events, and appends them to
`IDENTITY_EVENTS` with optimistic concurrency on the aggregate. Only then does it fold the
stored events into the KV projection, so the caller reads its own write; the projector
consumer folds them too, which repairs a crash between the two steps. A concurrent append
(another command, or a login event on the same account) makes us decide again on fresh
state, a few times, before answering 409.

Secrets are not domain facts to broadcast: the password hash, TOTP secret and client secret
digest are written to the credentials bucket before the event that makes them reachable.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from identity.adapters.eventlog import EventLog
from identity.adapters.projector import apply_event
from identity.adapters.repository import StaleWrite, Stores
from identity.domain import commands
from identity.domain.errors import AlreadyExists, InvalidCommand, NotFound
from identity.domain.model import Client, User
from identity.domain.projection import apply_user
from identity.domain.security import Passwords, new_secret, secret_digest
from mutualis_kernel.bus.errors import ConcurrencyConflict
from mutualis_kernel.bus.publisher import EventPublisher
from mutualis_kernel.events import Event
from mutualis_kernel.tenants import TenantDirectory

#: Attempts at a command whose aggregate moved under it before we answer 409.
ATTEMPTS = 5


@dataclass
class Deps:
    stores: Stores
    publisher: EventPublisher
    passwords: Passwords
    tenants: TenantDirectory
    log: EventLog
    dev_mode: bool = False
    #: Fold appended events into KV at once. Off only to simulate a crash right after the
    #: append (tests): the projector must then catch up alone.
    project_synchronously: bool = True


async def publish_all(deps: Deps, events: list[Event], aggregate_id: str) -> None:
    """Security facts (logins, refresh reuse): appended without a version check, because
    they record what happened rather than decide on state; the projector folds them."""
    for event in events:
        tenant = getattr(event, "tenant")  # noqa: B009 - every identity event has one
        await deps.publisher.publish(event, tenant=tenant, aggregate_id=aggregate_id)
    events.clear()


async def append_all(
    deps: Deps, events: list[Event], aggregate_id: str, expected_version: int
) -> list[tuple[int, Event]]:
    """Append one aggregate's new events in order, each expecting the one before it."""
    stored: list[tuple[int, Event]] = []
    version = expected_version
    for event in events:
        tenant = getattr(event, "tenant")  # noqa: B009 - every identity event has one
        result = await deps.publisher.append(
            event, tenant=tenant, aggregate_id=aggregate_id, expected_version=version
        )
        version = result.sequence
        stored.append((version, event))
    events.clear()
    if deps.project_synchronously:
        for seq, event in stored:
            await apply_event(deps.stores, seq, event)
    return stored


def _check_tenant(deps: Deps, tenant: str) -> None:
    if tenant not in deps.tenants:
        raise InvalidCommand(f"unknown tenant {tenant!r}")


async def load_user(deps: Deps, user_id: str, tenant: str | None) -> tuple[User | None, int]:
    """The account as the stream says it is now, and the version to append at.

    The projected document is the starting point; events stored after its `seq` (a lagging
    projector, a crash after an append) are folded in on the way.
    """
    doc = await deps.stores.users.doc(user_id)
    version = int(doc["seq"]) if doc else 0
    state = {k: v for k, v in doc.items() if k != "seq"} if doc else None
    owner = str(doc["tenant"]) if doc else tenant
    if owner is None:
        return None, 0
    async for seq, envelope in deps.log.after(owner, "user", user_id, version + 1):
        state = apply_user(state, envelope.data)
        version = seq
    return await deps.stores.users.build(state), version


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
        by=by,
    )

    async def has_events(tenant: str, user_id: str) -> bool:
        return await deps.log.has_events(tenant, "user", user_id)

    await deps.stores.users.reserve_username(user.username, user.id, user.tenant, has_events)
    await deps.stores.credentials.bucket.create(
        f"user.{user.id}",
        {"password_hash": user.password_hash, "totp_secret": user.totp_secret},
    )
    try:
        await append_all(deps, user.pending_events, user.id, expected_version=0)
    except ConcurrencyConflict:
        raise AlreadyExists(f"user {user.id}") from None  # a fresh random id: never expected
    return user


async def _change_user(
    deps: Deps, user_id: str, tenant: str, change: Callable[[User], None]
) -> User:
    for _ in range(ATTEMPTS):
        user, version = await load_user(deps, user_id, tenant)
        if user is None or user.tenant != tenant:
            # Seen from another tenant, the account does not exist.
            raise NotFound(f"no user {user_id} in {tenant}")
        change(user)
        if not user.pending_events:
            return user
        try:
            await append_all(deps, user.pending_events, user.id, version)
        except ConcurrencyConflict:
            continue  # the account moved (another command, a login): decide again
        return user
    raise StaleWrite(f"user {user_id}")


async def disable_user(command: commands.DisableUser, deps: Deps, by: str | None = None) -> User:
    return await _change_user(
        deps, command.user_id, command.tenant, lambda u: u.set_disabled(command.disabled, by)
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
        by=by,
    )

    async def has_events(tenant: str, client_id: str) -> bool:
        return await deps.log.has_events(tenant, "client", client_id)

    await deps.stores.clients.reserve(
        client.client_id, client.tenant, client.secret_hash, has_events
    )
    try:
        await append_all(deps, client.pending_events, client.client_id, expected_version=0)
    except ConcurrencyConflict:
        raise AlreadyExists(f"client {client.client_id}") from None
    return client, secret


async def erase_user(command: commands.EraseUser, deps: Deps, by: str | None = None) -> None:
    for _ in range(ATTEMPTS):
        user, version = await load_user(deps, command.user_id, None)
        if user is None:
            raise NotFound(f"no user {command.user_id}")
        user.erase(by)
        try:
            await append_all(deps, user.pending_events, user.id, version)
        except ConcurrencyConflict:
            continue
        return
    raise StaleWrite(f"user {command.user_id}")


Handler = Callable[[Any, Deps, str | None], Awaitable[Any]]

HANDLERS: dict[type[Any], Handler] = {
    commands.CreateUser: create_user,
    commands.DisableUser: disable_user,
    commands.GrantRole: grant_role,
    commands.RevokeRole: revoke_role,
    commands.RegisterClient: register_client,
    commands.EraseUser: erase_user,
}
