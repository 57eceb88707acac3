"""The projector: folds every event of `IDENTITY_EVENTS` into the KV projections.

The request that appends an event also projects it at once (read-your-writes); this
consumer is what makes the projections right anyway, whatever crashed between the append
and that write. Folding is idempotent: a document records the stream sequence of the last
event folded in and skips anything not newer, under compare-and-set.
"""

from __future__ import annotations

import contextvars
from typing import Any

from nats.aio.msg import Msg
from nats.js import JetStreamContext

from identity.adapters.repository import Stores
from identity.domain import events
from identity.domain.projection import apply_client, apply_user
from identity.manifest import PROJECTOR
from mutualis_kernel.bus import deadletter
from mutualis_kernel.bus.consumer import EventConsumer, Handler
from mutualis_kernel.bus.errors import Unprocessable
from mutualis_kernel.bus.spec import ConsumerSpec
from mutualis_kernel.events.envelope import Envelope
from mutualis_kernel.events.registry import Event

_sequence: contextvars.ContextVar[int] = contextvars.ContextVar("identity_stream_sequence")


class SequencedConsumer(EventConsumer):
    """An `EventConsumer` whose handlers can read the stream sequence of their message.

    The kernel hands handlers the envelope only; projections need the sequence, so it is
    carried in a context variable around the kernel's own handling.
    """

    async def handle(self, message: Msg, *, replayed: bool = False) -> None:
        if replayed:
            # A replayed dead letter keeps its original position in its header.
            seq = int((message.headers or {}).get(deadletter.SEQUENCE, "0") or 0)
        else:
            seq = message.metadata.sequence.stream if message.metadata.sequence else 0
        token = _sequence.set(seq)
        try:
            await super().handle(message, replayed=replayed)
        finally:
            _sequence.reset(token)


def current_sequence() -> int:
    seq = _sequence.get(0)
    if seq <= 0:
        raise Unprocessable("no stream sequence for this event")
    return seq


async def apply_event(stores: Stores, seq: int, event: Event) -> None:
    """Fold one event stored at `seq` into the projection it belongs to."""
    if type(event).aggregate == events.SECURITY:
        return  # a fact about a login, nothing in the account (older streams have them)
    if isinstance(event, events.ClientRegistered):
        await stores.clients.project(event.client_id, seq, lambda d: apply_client(d, event))
        return
    user_id = getattr(event, "user_id", None)
    if not isinstance(user_id, str) or user_id == "unknown":
        return  # failed logins for no account belong to no document
    await stores.users.project(user_id, seq, lambda d: apply_user(d, event))
    if isinstance(event, events.UserErased):
        await stores.credentials.bucket.delete(f"user.{user_id}")
        await stores.devices.delete(f"d.{user_id}")


def projector(
    js: JetStreamContext, stores: Stores, spec: ConsumerSpec = PROJECTOR
) -> SequencedConsumer:
    async def handle(envelope: Envelope[Any]) -> None:
        await apply_event(stores, current_sequence(), envelope.data)

    handlers: dict[type[Event], Handler] = {
        model: handle
        for model in (
            events.UserRegistered,
            events.UserUpdated,
            events.UserErased,
            events.RoleGranted,
            events.RoleRevoked,
            events.ClientRegistered,
            events.LoginSucceeded,
            events.LoginFailed,
            events.RefreshReused,
        )
    }
    return SequencedConsumer(js, spec, handlers)
