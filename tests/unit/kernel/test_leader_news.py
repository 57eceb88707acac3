"""Retries waiting out an election ask again as soon as a leader is elected, not up to 2 s later."""

import asyncio

import nats.errors
import pytest

from mutualis_kernel.bus.leaders import UNANSWERED_S, LeaderNews, WaitingRetries, waiting_retries
from mutualis_kernel.bus.publisher import with_attempt_limits, with_hedged_attempts, with_retries


async def test_news_ends_a_pause_between_two_attempts() -> None:
    retries = WaitingRetries()
    pause = asyncio.ensure_future(retries.pause(60))
    await asyncio.sleep(0)

    assert retries.wake() == 1

    await asyncio.wait_for(pause, 5)  # not 60 s


async def test_news_cuts_short_an_attempt_left_unanswered() -> None:
    retries = WaitingRetries()

    async def lost_with_the_old_leader() -> None:
        async with retries.attempt():
            await asyncio.sleep(60)

    attempt = asyncio.ensure_future(lost_with_the_old_leader())
    await asyncio.sleep(UNANSWERED_S * 1.5)

    assert retries.wake() == 1

    with pytest.raises(LeaderNews):
        await asyncio.wait_for(attempt, 5)


async def test_an_attempt_just_sent_is_left_to_its_answer() -> None:
    retries = WaitingRetries()
    answer = asyncio.get_running_loop().create_future()

    async def just_sent() -> str:
        async with retries.attempt():
            return await answer

    attempt = asyncio.ensure_future(just_sent())
    await asyncio.sleep(0)

    assert retries.wake() == 0
    answer.set_result("stored")
    assert await attempt == "stored"


async def test_a_retry_asks_again_once_a_leader_is_elected() -> None:
    # First attempt: no responders (the stream has no leader). Second: sent to the leader
    # that is about to die, never answered. Third, after the news: answered.
    calls = 0
    second_sent = asyncio.Event()

    async def publish() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise nats.errors.NoRespondersError()
        if calls == 2:
            second_sent.set()
            await asyncio.sleep(3600)
        return "stored"

    async def servers_announce_a_leader() -> None:
        await second_sent.wait()
        await asyncio.sleep(UNANSWERED_S * 1.5)
        waiting_retries.wake()

    announcer = asyncio.ensure_future(servers_announce_a_leader())
    # A deadline of an hour: only the news can end the second attempt.
    assert await asyncio.wait_for(with_retries(publish, 3600, "an event"), 10) == "stored"
    assert calls == 3
    await announcer


async def test_a_hedged_call_starts_its_next_attempt_on_news() -> None:
    started = 0
    second_started = asyncio.Event()

    async def create_reader() -> str:
        nonlocal started
        started += 1
        if started == 1:
            await asyncio.sleep(3600)  # lost with the old leader
        second_started.set()
        return f"reader {started}"

    async def discard(_: str) -> None:
        return None

    call = asyncio.ensure_future(
        with_hedged_attempts(create_reader, 3600, "a reader", discard=discard)
    )
    await asyncio.sleep(UNANSWERED_S * 1.5)  # less than the first attempt's own limit
    waiting_retries.wake()
    for _ in range(20):  # a few turns of the event loop, no clock
        await asyncio.sleep(0)

    assert second_started.is_set()
    assert await call == "reader 2"


async def test_a_whole_object_put_under_way_is_not_started_again_on_news() -> None:
    # Second attempt of a put (the first met no responders): it streams chunks for a while,
    # and an election elsewhere must not send the file again from its first byte.
    calls = 0
    second_under_way = asyncio.Event()
    finish = asyncio.Event()

    async def put(limit_s: float) -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise nats.errors.NoRespondersError()
        second_under_way.set()
        await finish.wait()
        return "stored"

    call = asyncio.ensure_future(with_attempt_limits(put, 3600, "an object"))
    await second_under_way.wait()
    await asyncio.sleep(UNANSWERED_S * 1.5)
    waiting_retries.wake()
    finish.set()

    assert await asyncio.wait_for(call, 10) == "stored"
    assert calls == 2
