"""The whole platform, started the way a developer starts it: `mutualis up --detach`.

Three NATS nodes (one per datacenter), the dev TSA, the mail and SMS sinks and the four
services as real processes on free loopback ports, exporting their traces over OTLP to a
receiver the tests read. Stopped with `mutualis down` at teardown, pass or fail.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mutualis_cli.demo import platform_urls
from mutualis_cli.journey.scenario import PlatformUrls
from mutualis_cli.ports import free_up_options
from mutualis_cli.rundir import RunState, load_state
from mutualis_kernel.testing.otlp import OtlpReceiver


@dataclass
class RunningPlatform:
    run_dir: Path
    urls: PlatformUrls
    receiver: OtlpReceiver
    #: What `mutualis up` printed.
    up_output: str = ""

    @property
    def state(self) -> RunState:
        state = load_state(self.run_dir)
        assert state is not None
        return state

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "mutualis_cli.main", *args, "--run-dir", str(self.run_dir)],
            capture_output=True,
            text=True,
            timeout=240,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"mutualis {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
        return done


@pytest.fixture(scope="module")
def running_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    run_dir = tmp_path_factory.mktemp("platform") / "run"
    receiver = OtlpReceiver()
    env = {
        **os.environ,
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_SDK_DISABLED": "false",
    }
    args = [
        sys.executable,
        "-m",
        "mutualis_cli.main",
        "up",
        "--detach",
        "--run-dir",
        str(run_dir),
        *free_up_options(),
    ]
    with receiver.running():
        started = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
        try:
            assert started.returncode == 0, started.stdout + started.stderr
            state = load_state(run_dir)
            assert state is not None
            yield RunningPlatform(run_dir, platform_urls(state), receiver, started.stdout)
        finally:
            subprocess.run(
                [sys.executable, "-m", "mutualis_cli.main", "down", "--run-dir", str(run_dir)],
                capture_output=True,
                timeout=120,
            )
