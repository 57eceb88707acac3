"""What every benchmark needs: a real three-datacenter cluster on free ports, and stats."""

from __future__ import annotations

import os
import statistics
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from mutualis_kernel.runtime import LocalCluster, Topology
from mutualis_kernel.testing.ports import free_port_block


@contextmanager
def three_datacenters() -> Iterator[LocalCluster]:
    with tempfile.TemporaryDirectory(prefix="mutualis-bench-") as run_dir:
        topology = Topology(
            run_dir=Path(run_dir),
            client_port_base=free_port_block(3),
            monitor_port_base=free_port_block(3),
            cluster_port_base=free_port_block(3),
        )
        cluster = LocalCluster(topology)
        with cluster.running():
            yield cluster


TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int, thread: int | None = None) -> float:
    """User + system CPU seconds of process `pid` (or of one of its threads) so far, from
    /proc, in clock ticks."""
    path = f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat"
    with open(path) as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def percentile(samples: Sequence[float], q: float) -> float:
    ordered = sorted(samples)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def latency_summary_ms(samples_s: Sequence[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(samples_s, 50) * 1000, 3),
        "p99_ms": round(percentile(samples_s, 99) * 1000, 3),
        "mean_ms": round(statistics.fmean(samples_s) * 1000, 3),
    }


def ratio(ours: float, raw: float) -> float:
    return round(ours / raw, 3) if raw else float("nan")
