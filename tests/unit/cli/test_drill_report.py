"""How a drill turns step completion times into its stall figures."""

from mutualis_cli.drill import longest_gap


def test_the_longest_gap_is_measured_between_completions_and_the_window_ends() -> None:
    assert longest_gap([1.0, 2.0, 6.0, 7.0], 0.0, 8.0) == (4.0, 2.0)


def test_the_failover_stall_counts_only_gaps_that_begin_before_the_heal() -> None:
    steps = [1.0, 2.0, 4.0, 5.0, 12.0]  # 2 -> 4 during the failover; 5 -> 12 while restarting

    assert longest_gap(steps, 0.0, 13.0) == (7.0, 5.0)
    assert longest_gap(steps, 0.0, 13.0, beginning_before=3.0) == (2.0, 2.0)
