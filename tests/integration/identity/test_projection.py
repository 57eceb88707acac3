"""The event is the write: KV accounts and clients are projections the projector repairs.

A crash right after an append (simulated by turning the request's own projection off) leaves
the stream ahead of KV; the projector consumer brings KV up to date, and a later command
decides on the stream's state, not on the stale document.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import nats
import pytest
from nats.js import JetStreamContext

from identity.adapters.eventlog import EventLog
from identity.adapters.projector import apply_event, projector
from identity.adapters.repository import Stores
from identity.domain import commands
from identity.domain.events import RoleGranted
from identity.domain.security import PasswordPolicy, Passwords
from identity.manifest import RESOURCES
from identity.service_layer import handlers
from mutualis_kernel.bus.publisher import EventPublisher
from mutualis_kernel.runtime import LocalCluster
from mutualis_kernel.streams import KERNEL_RESOURCES, apply_resources_patiently
from mutualis_kernel.tenants import default_tenants

# Cheap hashes: these tests are about events and projections, not argon2 cost.
CHEAP = PasswordPolicy(memory_kib=1024, time_cost=1, parallelism=1)


@pytest.fixture
async def js(nats_cluster: LocalCluster) -> AsyncIterator[JetStreamContext]:
    nc = await nats.connect(servers=nats_cluster.client_urls)
    yield nc.jetstream()
    await nc.close()


@pytest.fixture
async def deps(js: JetStreamContext) -> handlers.Deps:
    await apply_resources_patiently(js, [KERNEL_RESOURCES, RESOURCES], 3)
    return handlers.Deps(
        await Stores.open(js),
        EventPublisher(js, source_service="identity"),
        Passwords(CHEAP),
        default_tenants(),
        EventLog(js),
        project_synchronously=False,
    )


async def eventually(check: Callable[[], Awaitable[Any]], seconds: float = 20.0) -> Any:
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        value = await check()
        if value or asyncio.get_running_loop().time() > deadline:
            return value
        await asyncio.sleep(0.05)


def new_agent(username: str, tenant: str = "pessac") -> commands.CreateUser:
    return commands.CreateUser(
        username=username,
        kind="agent",
        tenant=tenant,
        name="Agent Projeté",
        password="un mot de passe assez long",
        roles=["agent"],
    )


async def test_the_projector_brings_kv_up_to_date_after_a_crash_following_the_append(
    deps: handlers.Deps, js: JetStreamContext
) -> None:
    user = await handlers.create_user(new_agent("crash.after.append"), deps)
    # The event is stored, the request "crashed" before projecting it: KV knows nothing yet.
    assert await deps.stores.users.by_username("crash.after.append") is None
    assert await deps.log.has_events("pessac", "user", user.id)

    # A command still decides on the stream's state, not on the missing document.
    await handlers.grant_role(
        commands.GrantRole(user_id=user.id, tenant="pessac", role="signatory"), deps
    )

    stop = asyncio.Event()
    consumer = projector(js, deps.stores)
    task = asyncio.create_task(consumer.run(stop))
    try:

        async def projected() -> Any:
            found = await deps.stores.users.by_username("crash.after.append")
            return found if found is not None and "signatory" in found.roles else None

        found = await eventually(projected)
    finally:
        stop.set()
        await task
    assert found is not None
    assert found.id == user.id
    assert found.roles == ["agent", "signatory"]
    assert deps.passwords.verify(found.password_hash, "un mot de passe assez long")


async def test_folding_an_event_again_or_an_older_one_changes_nothing(
    deps: handlers.Deps,
) -> None:
    deps.project_synchronously = True
    user = await handlers.create_user(new_agent("replayed.events"), deps)
    await handlers.grant_role(
        commands.GrantRole(user_id=user.id, tenant="pessac", role="archivist"), deps
    )
    doc = await deps.stores.users.doc(user.id)
    assert doc is not None
    assert doc["roles"] == ["agent", "archivist"]

    # A redelivered older event (the grant seen before the archivist role) is skipped.
    stale = RoleGranted(user_id=user.id, tenant="pessac", role="agent", roles=("agent",))
    await apply_event(deps.stores, doc["seq"] - 1, stale)
    await apply_event(deps.stores, doc["seq"], stale)
    again = await deps.stores.users.doc(user.id)
    assert again == doc


async def test_an_erased_account_stays_erased_when_its_registration_is_replayed(
    deps: handlers.Deps,
) -> None:
    deps.project_synchronously = True
    user = await handlers.create_user(new_agent("erased.then.replayed"), deps)
    await handlers.erase_user(commands.EraseUser(user_id=user.id), deps)
    assert await deps.stores.users.by_username("erased.then.replayed") is None
    assert await deps.stores.credentials.user(user.id) is None

    async for seq, envelope in deps.log.after("pessac", "user", user.id, 1):
        await apply_event(deps.stores, seq, envelope.data)

    assert await deps.stores.users.find(user.id) is None
    assert await deps.stores.users.by_username("erased.then.replayed") is None
    # The name is free again for a new account.
    again = await handlers.create_user(new_agent("erased.then.replayed"), deps)
    assert again.id != user.id
    assert (await deps.stores.users.by_username("erased.then.replayed")) is not None


async def test_a_username_is_registered_once_even_from_two_requests_at_once(
    deps: handlers.Deps,
) -> None:
    deps.project_synchronously = True
    results = await asyncio.gather(
        handlers.create_user(new_agent("only.once"), deps),
        handlers.create_user(new_agent("only.once", tenant="talence"), deps),
        return_exceptions=True,
    )
    created = [r for r in results if not isinstance(r, BaseException)]
    assert len(created) == 1
