"""Which NATS errors a retry outlives: elections and reconnects, not answers."""

import asyncio

import nats.errors
import pytest
from nats.js.errors import (
    APIError,
    BadRequestError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
    ServiceUnavailableError,
)

from mutualis_kernel.bus.errors import PublishTimeout
from mutualis_kernel.bus.publisher import (
    PATIENT_ATTEMPT_MAX_S,
    PATIENT_ATTEMPT_S,
    attempt_limit,
    is_transient,
    with_attempt_limits,
    with_hedged_attempts,
    with_retries,
)
from mutualis_kernel.streams import is_settling, until_settled


@pytest.mark.parametrize(
    "error",
    [
        nats.errors.TimeoutError(),
        nats.errors.NoRespondersError(),
        ServiceUnavailableError(),
        # A retried publish whose first attempt is still being proposed (a partitioned leader).
        APIError(code=409, err_code=10158, description="duplicate message id is in process"),
    ],
)
def test_elections_and_reconnects_are_transient(error: Exception) -> None:
    assert is_transient(error)


@pytest.mark.parametrize("error", [KeyNotFoundError(), KeyWrongLastSequenceError(), ValueError()])
def test_answers_are_not_even_when_nats_py_left_out_their_code(error: Exception) -> None:
    assert not is_transient(error)


class Flaky:
    """An operation that fails with `errors` in turn, then answers."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "stored"


async def test_a_retry_outlives_transient_errors() -> None:
    flaky = Flaky(nats.errors.TimeoutError(), ServiceUnavailableError())

    assert await with_retries(flaky, 5.0, "an event") == "stored"
    assert flaky.calls == 3


async def test_an_answer_is_raised_at_once_not_retried() -> None:
    flaky = Flaky(KeyWrongLastSequenceError())

    with pytest.raises(KeyWrongLastSequenceError):
        await with_retries(flaky, 5.0, "an event")
    assert flaky.calls == 1


async def test_past_the_deadline_the_last_error_is_named() -> None:
    flaky = Flaky(*[nats.errors.TimeoutError() for _ in range(1000)])

    with pytest.raises(PublishTimeout, match=r"an event not stored within 0\.3s"):
        await with_retries(flaky, 0.3, "an event")
    assert 1 < flaky.calls < 1000


async def test_an_attempt_never_answered_is_dropped_and_sent_again() -> None:
    calls = 0

    async def first_lost_then_answered() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.sleep(3600)  # sent to a leader that died: no answer will come
        return "stored"

    assert await with_retries(first_lost_then_answered, 5.0, "a read", attempt_timeout_s=0.1) == (
        "stored"
    )
    assert calls == 2


async def test_a_slow_answer_gets_more_time_on_each_attempt() -> None:
    calls = 0

    async def always_slow() -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.15)  # a starved cluster: alive, but slower than the first limit
        return "stored"

    assert await with_retries(always_slow, 5.0, "a read", attempt_timeout_s=0.1) == "stored"
    assert calls == 2


def test_attempt_limits_double_from_the_first_up_to_the_ceiling() -> None:
    assert [attempt_limit(n) for n in range(1, 6)] == [
        PATIENT_ATTEMPT_S * 2**k
        if PATIENT_ATTEMPT_S * 2**k < PATIENT_ATTEMPT_MAX_S
        else PATIENT_ATTEMPT_MAX_S
        for k in range(5)
    ]
    assert PATIENT_ATTEMPT_S < 1.0, "a graceful restart must cost a client less than 1 s"


async def test_a_call_with_its_own_timeout_is_given_longer_limits_on_each_attempt() -> None:
    limits: list[float] = []

    async def publish(limit_s: float) -> str:
        limits.append(limit_s)
        if len(limits) < 3:
            raise nats.errors.TimeoutError  # its own timeout ran out: the answer was lost
        return "stored"

    assert await with_attempt_limits(publish, 5.0, "a message", max_s=1.5) == "stored"
    assert limits == [min(PATIENT_ATTEMPT_S * 2**k, 1.5) for k in range(3)]


class _Attempts:
    """Attempts that each take the time given for them (None: never answered)."""

    def __init__(self, *durations: float | None) -> None:
        self.durations = list(durations)
        self.started: list[int] = []
        self.cancelled: list[int] = []
        self.discarded: list[str] = []

    async def run(self) -> str:
        number = len(self.started) + 1
        self.started.append(number)
        duration = self.durations[number - 1] if number <= len(self.durations) else 0.0
        try:
            await asyncio.sleep(3600 if duration is None else duration)
        except asyncio.CancelledError:
            self.cancelled.append(number)
            raise
        return f"attempt {number}"

    async def discard(self, result: str) -> None:
        self.discarded.append(result)


async def test_a_hedged_call_whose_first_answer_is_lost_is_answered_by_the_next_attempt() -> None:
    attempts = _Attempts(None, 0.0)

    assert await with_hedged_attempts(attempts.run, 5.0, "a read", discard=attempts.discard) == (
        "attempt 2"
    )
    assert attempts.cancelled == [1], "the unanswered attempt is not left running"


async def test_a_slow_answer_to_a_hedged_call_still_wins_over_the_attempts_after_it() -> None:
    # The first answer comes after its limit, while the second attempt is still waiting.
    attempts = _Attempts(PATIENT_ATTEMPT_S * 1.5, PATIENT_ATTEMPT_S * 10)

    assert await with_hedged_attempts(attempts.run, 5.0, "a read", discard=attempts.discard) == (
        "attempt 1"
    )
    assert attempts.started == [1, 2]
    assert attempts.cancelled == [2]


async def test_a_hedged_call_gives_up_at_its_deadline_and_stops_every_attempt() -> None:
    attempts = _Attempts(None, None, None)

    with pytest.raises(PublishTimeout):
        await with_hedged_attempts(attempts.run, 0.6, "a read", discard=attempts.discard)
    assert sorted(attempts.cancelled) == attempts.started


async def test_a_hedged_call_passes_on_an_error_that_no_retry_outlives() -> None:
    async def refused() -> str:
        raise KeyNotFoundError()

    async def keep(_: str) -> None:
        raise AssertionError("nothing to discard")

    with pytest.raises(KeyNotFoundError):
        await with_hedged_attempts(refused, 5.0, "a read", discard=keep)


@pytest.mark.parametrize(
    "error",
    [
        nats.errors.TimeoutError(),
        ServiceUnavailableError(),
        # A node the meta leader saw miss a heartbeat: placement refused for a moment (CI).
        BadRequestError(code=400, err_code=10005, description="no suitable peers for placement"),
    ],
)
def test_a_cluster_still_settling_is_waited_for_when_creating_resources(
    error: Exception,
) -> None:
    assert is_settling(error)


def test_a_refused_configuration_is_not_waited_for() -> None:
    assert not is_settling(BadRequestError(code=400, err_code=10052, description="bad config"))


async def test_creating_a_resource_goes_on_once_the_cluster_has_settled() -> None:
    answers: list[Exception | str] = [
        BadRequestError(code=400, err_code=10005, description="no suitable peers for placement"),
        "created",
    ]

    async def create() -> str:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert await until_settled(create, patience_s=5) == "created"
