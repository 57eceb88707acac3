"""How a drill turns step completion times into its stall figures."""

import httpx

from mutualis_cli.drill import (
    ElectionLog,
    JourneyRecord,
    TimedRequest,
    longest_gap,
    longest_wait,
    operation_of,
    slowest_request,
    slowest_requests,
)


def test_the_longest_gap_is_measured_between_completions_and_the_window_ends() -> None:
    assert longest_gap([1.0, 2.0, 6.0, 7.0], 0.0, 8.0) == (4.0, 2.0)


def test_the_failover_stall_counts_only_gaps_that_begin_before_the_heal() -> None:
    steps = [1.0, 2.0, 4.0, 5.0, 12.0]  # 2 -> 4 during the failover; 5 -> 12 while restarting

    assert longest_gap(steps, 0.0, 13.0) == (7.0, 5.0)
    assert longest_gap(steps, 0.0, 13.0, beginning_before=3.0) == (2.0, 2.0)


def test_the_longest_wait_is_one_journeys_longest_step_begun_before_the_heal() -> None:
    quick = JourneyRecord(0, "pessac", "dc1", started_s=0.0, finished_s=4.0, steps=[1, 2, 3, 4])
    stuck = JourneyRecord(1, "bordeaux", "dc3", started_s=9.0, finished_s=20.0, steps=[10, 17])

    stuck.step_names = ["logged in", "submitted"]

    assert longest_wait([quick, stuck], 9.5, 30.0, beginning_before=15.0) == (7.0, 10, "submitted")
    assert longest_wait([quick, stuck], 0.0, 30.0, beginning_before=5.0) == (1.0, 0.0, "")


def test_requests_of_different_journeys_and_tenants_are_one_operation() -> None:
    signing = httpx.Request("POST", "http://127.0.0.1:8801/v1/folders/01J9Z4/steps/1/sign")
    records = httpx.Request("GET", "http://127.0.0.1:8803/v1/archive/pessac/records/r-42?x=1")

    assert operation_of(signing) == "POST /v1/folders/{id}/steps/{id}/sign"
    assert operation_of(records) == "GET /v1/archive/{tenant}/records/{id}"


def test_a_request_during_the_fault_is_judged_against_the_same_operation_before_it() -> None:
    requests = [
        TimedRequest(1.0, 1.2, "POST /sign"),  # a signature is slow when all is well
        TimedRequest(2.0, 0.1, "GET /folder"),
        TimedRequest(10.5, 1.5, "POST /sign"),  # 0.3 s beyond the usual signature
        TimedRequest(11.0, 0.9, "GET /folder"),  # 0.8 s beyond the usual read: the worst
        TimedRequest(30.0, 5.0, "GET /folder"),  # during the heal: not the failover's
    ]

    excess, request = slowest_request(requests, 10.0, beginning_before=20.0)

    assert round(excess, 3) == 0.8
    assert request == requests[3]


def test_the_report_ranks_the_requests_that_suffered_most_worst_first() -> None:
    requests = [
        TimedRequest(1.0, 1.2, "POST /sign"),
        TimedRequest(2.0, 0.1, "GET /folder"),
        TimedRequest(10.5, 1.5, "POST /sign"),
        TimedRequest(11.0, 0.9, "GET /folder"),
        TimedRequest(12.0, 0.2, "GET /folder"),
    ]

    ranked = slowest_requests(requests, 10.0, beginning_before=20.0, count=2)

    assert [(round(excess, 3), r) for excess, r in ranked] == [
        (0.8, requests[3]),
        (0.3, requests[2]),
    ]


def test_a_pause_of_the_load_itself_is_not_a_stall() -> None:
    # One journey 0 -> 3 (steps at 1, 3), idle until the next one starts at 10 (steps 12, 13).
    points = [0.0, 1.0, 3.0, 10.0, 12.0, 13.0]

    def in_flight(moment: float) -> bool:
        return 0.0 <= moment < 3.0 or 10.0 <= moment < 13.0

    assert longest_gap(points, 0.0, 13.0) == (7.0, 3.0)
    assert longest_gap(points, 0.0, 13.0, busy=in_flight) == (2.0, 1.0)


def test_waiting_for_the_next_one_time_code_is_the_persons_pace_not_a_stall() -> None:
    # The signatory's code of this 30 s window was used: the journey waits 10 -> 25 for the
    # next one, then the platform takes 2 s to log them in.
    totp = JourneyRecord(0, "talence", "dc2", started_s=0.0, finished_s=30.0, steps=[5, 27, 30])
    totp.step_names = ["submitted", "signatory stepped up", "signed"]
    totp.pauses = [(10.0, 25.0)]

    waited = longest_wait([totp], 0.0, 30.0, beginning_before=30.0)
    assert waited == (7.0, 5, "signatory stepped up")

    def in_flight(moment: float) -> bool:
        return 0.0 <= moment < 30.0 and not totp.paused_at(moment)

    assert longest_gap(totp.steps, 0.0, 30.0, busy=in_flight) == (7.0, 5)


def test_nats_own_election_time_is_the_last_stream_leader_elected_before_all_is_current() -> None:
    log = ElectionLog(now=lambda: 0.0)
    # Drill clock: the fault at 10 s, every stream current again at 15 s; a leader elected at
    # 8 s was an ordinary start-up election, those from 15 s on came after the platform healed.
    log.elected = [(8.0, "KV_A"), (14.5, "KV_B"), (18.2, "KV_C"), (16.0, "KV_D")]

    assert log.summary(fault_at=10.0, until=15.0) == {
        "streams_elected": 1,
        "last_elected_s": 4.5,
        "last_stream": "KV_B",
        "each": [{"stream": "KV_B", "after_s": 4.5}],
    }
    log.elected.append((12.0, "IDENTITY_EVENTS"))
    assert log.summary(fault_at=10.0, until=15.0)["streams_elected"] == 2
    assert log.summary(fault_at=10.0, until=15.0)["last_stream"] == "KV_B"


def test_no_election_no_yardstick() -> None:
    assert ElectionLog(now=lambda: 0.0).summary(fault_at=10.0, until=15.0) == {
        "streams_elected": 0,
        "last_elected_s": None,
        "last_stream": None,
        "each": [],
    }
