"""How a drill turns step completion times into its stall figures."""

from mutualis_cli.drill import JourneyRecord, longest_gap, longest_wait


def test_the_longest_gap_is_measured_between_completions_and_the_window_ends() -> None:
    assert longest_gap([1.0, 2.0, 6.0, 7.0], 0.0, 8.0) == (4.0, 2.0)


def test_the_failover_stall_counts_only_gaps_that_begin_before_the_heal() -> None:
    steps = [1.0, 2.0, 4.0, 5.0, 12.0]  # 2 -> 4 during the failover; 5 -> 12 while restarting

    assert longest_gap(steps, 0.0, 13.0) == (7.0, 5.0)
    assert longest_gap(steps, 0.0, 13.0, beginning_before=3.0) == (2.0, 2.0)


def test_the_longest_wait_is_one_journeys_longest_step_begun_before_the_heal() -> None:
    quick = JourneyRecord(0, "pessac", "dc1", started_s=0.0, finished_s=4.0, steps=[1, 2, 3, 4])
    stuck = JourneyRecord(1, "bordeaux", "dc3", started_s=9.0, finished_s=20.0, steps=[10, 17])

    assert longest_wait([quick, stuck], 9.5, 30.0, beginning_before=15.0) == (7.0, 10)
    assert longest_wait([quick, stuck], 0.0, 30.0, beginning_before=5.0) == (1.0, 0.0)
