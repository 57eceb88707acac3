"""An in-memory copy of the failure counters in `identity_throttle`, kept current by a watch.

Every login and every client authentication must know whether its account, client or
address is throttled, but nearly all of them have no failure at all: reading two KV keys per
request to learn that was the largest fixed cost of the client-credentials grant. Each
instance therefore follows the bucket with an ordered consumer and answers from memory.

The copy is only trusted once it has caught up with what the bucket held when the watch
started (the server's per-message `num_pending` reaching 0, or an empty bucket), never from
nats-py's "initial values done" marker, which can come before values in flight. Until then,
and whenever the watch is down, callers read KV as before. Writes still go to KV by
compare-and-set; the writer also notes its own write here so that it sees it at once. A
failure recorded by another instance is seen as soon as the watch delivers it; throttling
was never exact under concurrency anyway (the check and the count are separate steps).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Sequence

import nats.errors
import structlog
from nats.js.errors import NotFoundError
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

log = structlog.get_logger("identity.throttle")

#: Key prefixes that hold failure timestamps (`otp.*` marks used TOTP steps: not mirrored).
COUNTED = ("acct.", "addr.", "cli.", "caddr.")
#: Past this many keys, the ones without a failure inside the window are forgotten.
SWEEP_AT = 50_000


class FailureMirror:
    def __init__(self, kv: KeyValue, window_s: float) -> None:
        self.kv = kv
        self.window_s = window_s
        self._timestamps: dict[str, list[float]] = {}
        self._ready = False

    @property
    def ready(self) -> bool:
        return self._ready

    def recent(self, key: str) -> list[float] | None:
        """The key's failure timestamps, or None when the copy cannot be trusted (read KV)."""
        if not self._ready:
            return None
        return list(self._timestamps.get(key, ()))

    def note(self, key: str, timestamps: Sequence[float]) -> None:
        """Record a value this instance just wrote, before the watch brings it back."""
        self._timestamps[key] = list(timestamps)

    async def watch(self, stop: asyncio.Event) -> None:
        """Follow the bucket until `stop` is set; re-subscribe after a failure."""
        while not stop.is_set():
            try:
                await self._follow(stop)
            except (nats.errors.Error, TimeoutError, NotFoundError) as error:
                log.warning("throttle.watch_lost", error=repr(error))
            finally:
                self._ready = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)

    async def _follow(self, stop: asyncio.Event) -> None:
        info = await self.kv._js.stream_info(f"KV_{self.kv._name}")
        self._timestamps.clear()
        watcher = await self.kv.watchall()
        try:
            if not info.state.messages:
                self._ready = True  # nothing to catch up with; later writes arrive as updates
            while not stop.is_set():
                try:
                    entry = await watcher.updates(timeout=1.0)  # type: ignore[no-untyped-call]
                except (TimeoutError, nats.errors.TimeoutError):
                    continue
                if entry is None:
                    continue  # nats-py's own "caught up" marker: not trusted, see above
                self._apply(entry)
                if entry.delta == 0:
                    self._ready = True
        finally:
            with contextlib.suppress(nats.errors.Error, TimeoutError):
                await watcher.stop()  # type: ignore[no-untyped-call]

    def _apply(self, entry: KeyValue.Entry) -> None:
        if not entry.key.startswith(COUNTED):
            return
        if entry.operation in (KV_DEL, KV_PURGE) or not entry.value:
            self._timestamps.pop(entry.key, None)
            return
        try:
            timestamps = [float(t) for t in json.loads(entry.value)["timestamps"]]
        except (ValueError, KeyError, TypeError):
            log.warning("throttle.unreadable_entry", key=entry.key)
            return
        self._timestamps[entry.key] = timestamps
        if len(self._timestamps) > SWEEP_AT:
            self._sweep()

    def _sweep(self) -> None:
        horizon = time.time() - self.window_s
        stale = [k for k, ts in self._timestamps.items() if not ts or max(ts) < horizon]
        for key in stale:
            del self._timestamps[key]
