"""Fixtures for the `mutualis` command tests: free ports, a run dir, and a sure teardown."""

from __future__ import annotations

import importlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from mutualis_cli import platform
from mutualis_cli.rundir import load_state
from mutualis_kernel.service import ServiceManifest
from mutualis_kernel.testing import free_port_block

FAKE_SERVICES = Path(__file__).parent / "fake_services"


@dataclass(frozen=True)
class Ports:
    nats: int
    monitor: int
    cluster: int
    services: int

    def up_args(self, run_dir: Path) -> list[str]:
        return [
            "--run-dir",
            str(run_dir),
            "--nats-port",
            str(self.nats),
            "--nats-monitor-port",
            str(self.monitor),
            "--nats-cluster-port",
            str(self.cluster),
            "--port-base-services",
            str(self.services),
            # The platform's own services have tests of their own; these are about NATS.
            "--no-services",
        ]


@pytest.fixture
def ports() -> Ports:
    return Ports(
        nats=free_port_block(3),
        monitor=free_port_block(3),
        cluster=free_port_block(3),
        services=free_port_block(30),
    )


@pytest.fixture
def cli() -> CliRunner:
    return CliRunner()


@pytest.fixture
def run_dir(tmp_path: Path) -> Iterator[Path]:
    """A run dir whose platform, if any is left running, is stopped at teardown, pass or fail."""
    path = tmp_path / "run"
    try:
        yield path
    finally:
        if load_state(path) is not None:
            platform.down(path, Console(file=io.StringIO()))


@pytest.fixture
def clidemo(monkeypatch: pytest.MonkeyPatch) -> ServiceManifest:
    """The stand-in `clidemo` service, importable here and in the processes `up` starts."""
    monkeypatch.syspath_prepend(str(FAKE_SERVICES))
    monkeypatch.setenv("PYTHONPATH", str(FAKE_SERVICES))
    manifest: ServiceManifest = importlib.import_module("clidemo").MANIFEST
    return manifest
