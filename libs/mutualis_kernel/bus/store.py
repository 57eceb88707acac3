"""Reading an aggregate's history back from its service's event stream."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from nats.js import JetStreamContext
from nats.js.api import RawStreamMsg
from nats.js.errors import NotFoundError

from mutualis_kernel.bus.publisher import PATIENT_ATTEMPT_S, stream_of, with_retries
from mutualis_kernel.events.envelope import Envelope, decode
from mutualis_kernel.events.registry import Event, EventCatalog, catalog
from mutualis_kernel.events.subjects import SubjectFilter


@dataclass(frozen=True)
class History:
    """An aggregate's events in order, and the version to expect when appending next."""

    events: tuple[Envelope[Event], ...]
    version: int

    @property
    def is_new(self) -> bool:
        return self.version == 0


class EventStore:
    def __init__(
        self, js: JetStreamContext, known: EventCatalog = catalog, *, deadline_s: float = 15.0
    ) -> None:
        self._js = js
        self._known = known
        #: Each read waits out a leader election (4.5-7 s here) rather than fail.
        self.deadline_s = deadline_s

    async def load(self, service: str, tenant: str, aggregate: str, aggregate_id: str) -> History:
        """Every event of one aggregate, read from the stream leader (never a stale replica)."""
        stream = stream_of(service)
        subject_filter = SubjectFilter.aggregate(service, tenant, aggregate, aggregate_id)
        events: list[Envelope[Event]] = []
        next_seq = 1
        version = 0
        while True:
            message = await with_retries(
                partial(self._next, stream, next_seq, subject_filter),
                self.deadline_s,
                f"history of {aggregate} {aggregate_id}",
                attempt_timeout_s=PATIENT_ATTEMPT_S,
            )
            if message is None:
                break
            assert message.seq is not None
            assert message.subject is not None
            events.append(
                decode(
                    message.subject,
                    message.headers,
                    message.data or b"",
                    self._known,
                    stream_sequence=message.seq,
                )
            )
            version = message.seq
            next_seq = message.seq + 1
        return History(tuple(events), version)

    async def _next(self, stream: str, seq: int, subject_filter: str) -> RawStreamMsg | None:
        try:
            return await self._js.get_msg(stream, seq=seq, subject=subject_filter, next=True)
        except NotFoundError:
            return None
