"""Reading one aggregate's events from `IDENTITY_EVENTS`, from a given stream sequence on.

A projected document is a snapshot at its `seq`; a command reads only what came after it
(usually nothing) to decide on the true state and to learn the version to append at.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from mutualis_kernel.events.envelope import Envelope, decode
from mutualis_kernel.events.registry import Event
from mutualis_kernel.events.subjects import SubjectFilter

STREAM = "IDENTITY_EVENTS"


class EventLog:
    def __init__(self, js: JetStreamContext) -> None:
        self._js = js

    async def after(
        self, tenant: str, aggregate: str, aggregate_id: str, start: int
    ) -> AsyncIterator[tuple[int, Envelope[Event]]]:
        """(sequence, envelope) of the aggregate's events at or after stream sequence `start`."""
        subject_filter = SubjectFilter.aggregate("identity", tenant, aggregate, aggregate_id)
        next_seq = max(start, 1)
        while True:
            try:
                message = await self._js.get_msg(
                    STREAM, seq=next_seq, subject=subject_filter, next=True
                )
            except NotFoundError:
                return
            assert message.seq is not None
            assert message.subject is not None
            yield message.seq, decode(message.subject, message.headers, message.data or b"")
            next_seq = message.seq + 1

    async def has_events(self, tenant: str, aggregate: str, aggregate_id: str) -> bool:
        async for _ in self.after(tenant, aggregate, aggregate_id, 1):
            return True
        return False
