"""Waking the retries that wait out a JetStream election, the moment it is over.

A call retried through an election (`publisher.with_retries`) used to learn that its stream
had a leader again only when its attempt in flight timed out or its pause between attempts
ended: up to `PATIENT_ATTEMPT_MAX_S` (2 s) after the election, which the crash drills showed
on top of NATS's own election time. The servers announce each stream leader they elect
(`$JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED.<stream>`), and a client that has reconnected can
be heard again: either news cuts short the pauses and the long-unanswered attempts of the
retries under way in this process, which then ask again at once.

A retry woken for another stream's election than its own only asks once more; every call
that retries is safe to run twice (event ids, compare-and-set revisions, reads).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass

import nats.errors
import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

log = structlog.get_logger("mutualis_kernel.bus")

#: What the servers publish when a stream (a KV bucket, an object store) gets a new leader.
LEADER_ELECTED_SUBJECT = "$JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED.>"
#: An attempt unanswered for less than this is not cut short: a healthy cluster answers in
#: milliseconds, a loaded one here in tens of them, and cutting those would only resend them.
UNANSWERED_S = 0.1
#: After news, waiting retries ask again within this (spread so they do not all ask at once).
NEWS_SPREAD_S = 0.02


class LeaderNews(nats.errors.TimeoutError):
    """An attempt cut short because a leader was just elected or the connection came back:
    transient like the timeout it replaces, and asked again at once."""

    def __str__(self) -> str:
        return "nats: attempt cut short, a leader was elected or the connection came back"


@dataclass(eq=False)
class _Attempt:
    loop: asyncio.AbstractEventLoop
    began: float
    timeout: asyncio.Timeout
    woken: bool = False


class WaitingRetries:
    """The retries of this process between two attempts or in a long one, to wake on news."""

    def __init__(self) -> None:
        self._attempts: set[_Attempt] = set()
        self._pauses: set[asyncio.Future[None]] = set()
        #: Attempts and pauses cut short since the process started (logged; read by tests).
        self.woken_total = 0

    @contextlib.asynccontextmanager
    async def attempt(self) -> AsyncIterator[None]:
        """Run one attempt of a retry so that news can cut it short (`LeaderNews`)."""
        loop = asyncio.get_running_loop()
        woken = False
        try:
            async with asyncio.timeout(None) as timeout:
                entry = _Attempt(loop, loop.time(), timeout)
                self._attempts.add(entry)
                try:
                    yield
                finally:
                    self._attempts.discard(entry)
                    woken = entry.woken
        except TimeoutError:
            if woken:
                raise LeaderNews() from None
            raise

    async def pause(self, seconds: float) -> None:
        """Sleep `seconds` between two attempts, or less if news comes meanwhile."""
        waiter = self.next_news()
        timer = asyncio.get_running_loop().call_later(max(0.0, seconds), _settle, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            waiter.cancel()  # leaves the pauses when the sleeper itself is cancelled

    def next_news(self) -> asyncio.Future[None]:
        """A future that news settles (for callers that wait on several things at once);
        the caller cancels it when done with it."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pauses.add(waiter)
        waiter.add_done_callback(self._pauses.discard)
        return waiter

    def wake(self) -> int:
        """Cut short the pauses, and the attempts unanswered for `UNANSWERED_S`, of the retries
        on this event loop; returns how many."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        woken = 0
        for entry in list(self._attempts):
            if entry.loop is not loop or entry.woken:
                continue
            if now - entry.began >= UNANSWERED_S and not entry.timeout.expired():
                entry.woken = True
                entry.timeout.reschedule(now)
                woken += 1
        for waiter in list(self._pauses):
            if waiter.get_loop() is loop and not waiter.done():
                waiter.set_result(None)
                woken += 1
        self.woken_total += woken
        return woken


def _settle(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def news_spread() -> float:
    """How long a retry woken by news waits before asking again."""
    return random.uniform(0, NEWS_SPREAD_S)  # noqa: S311 - spreading load, not a secret


#: One per process: services run one event loop, and every retry of the kernel registers here.
waiting_retries = WaitingRetries()


async def watch_leader_elections(client: NATS) -> None:
    """Wake the waiting retries whenever the servers announce a stream leader.

    A client whose user may not read the advisories gets a permissions error from the server
    (logged by the connection's error callback) and retries as before."""

    async def elected(message: Msg) -> None:
        woken = waiting_retries.wake()
        if woken:
            stream = message.subject.rsplit(".", 1)[-1]
            log.info("nats.leader_elected", stream=stream, retries_woken=woken)

    await client.subscribe(LEADER_ELECTED_SUBJECT, cb=elected)
