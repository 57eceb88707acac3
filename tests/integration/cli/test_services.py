"""How `mutualis up` runs service instances, with the stand-in `clidemo` service."""

from __future__ import annotations

import io
import json
import socket
from pathlib import Path

import httpx
import pytest
from rich.console import Console
from typer.testing import CliRunner

from mutualis_cli import platform
from mutualis_cli.main import app
from mutualis_cli.rundir import load_state
from mutualis_cli.supervisor import ServiceNotReady, process_alive
from mutualis_kernel.runtime import PortInUse
from mutualis_kernel.service import ServiceManifest

from .conftest import FAKE_SERVICES, Ports


def options(run_dir: Path, ports: Ports, **extra: bool) -> platform.UpOptions:
    return platform.UpOptions(
        run_dir=run_dir,
        nats_port=ports.nats,
        nats_monitor_port=ports.monitor,
        nats_cluster_port=ports.cluster,
        port_base_services=ports.services,
        **extra,
    )


def test_ha_starts_one_instance_per_datacenter_each_preferring_its_own_node(
    cli: CliRunner, run_dir: Path, ports: Ports, clidemo: ServiceManifest
) -> None:
    output = io.StringIO()
    state = platform.start_platform(
        options(run_dir, ports, ha=True), [clidemo], Console(file=output)
    )

    instances = [s for s in state.services if s.name == "clidemo"]
    assert [(s.datacenter, s.port) for s in instances] == [
        ("dc1", ports.services),
        ("dc2", ports.services + 10),
        ("dc3", ports.services + 20),
    ]
    for service, node in zip(instances, state.nodes, strict=True):
        settings = httpx.get(f"{service.url}/readyz").json()
        assert settings["MUTUALIS_DATACENTER"] == service.datacenter
        assert settings["MUTUALIS_SERVICE_NAME"] == "clidemo"
        assert settings["MUTUALIS_HTTP_PORT"] == str(service.port)
        assert json.loads(settings["MUTUALIS_NATS_URLS"])[0] == node.client_url
        assert settings["MUTUALIS_DEV_MODE"] == "true"
    assert "clidemo@dc2 ready" in output.getvalue()

    report = json.loads(cli.invoke(app, ["status", "--run-dir", str(run_dir), "--json"]).stdout)
    assert [
        (s["datacenter"], s["ready"]) for s in report["services"] if s["name"] == "clidemo"
    ] == [
        ("dc1", True),
        ("dc2", True),
        ("dc3", True),
    ]

    assert cli.invoke(app, ["down", "--run-dir", str(run_dir)]).exit_code == 0
    assert not any(process_alive(s.pid) for s in state.services if s.pid)
    # SIGTERM let each instance stop on its own: the log says so
    log = Path(instances[1].log_path).read_text()
    assert "clidemo listening in dc2" in log
    assert "clidemo stopped" in log


def test_a_taken_service_port_is_refused_before_anything_starts(
    run_dir: Path, ports: Ports, clidemo: ServiceManifest
) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", ports.services))
        squatter.listen()
        with pytest.raises(PortInUse, match=rf"port {ports.services} .*--port-base-services"):
            platform.start_platform(options(run_dir, ports), [clidemo], Console(file=io.StringIO()))

    assert load_state(run_dir) is None


def test_a_service_that_dies_while_starting_stops_the_whole_platform(
    run_dir: Path, ports: Ports, clidemo: ServiceManifest, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(FAKE_SERVICES / "missing"))  # clidemo not importable

    with pytest.raises(ServiceNotReady, match="clidemo@dc1 exited during start"):
        platform.start_platform(
            options(run_dir, ports, single=True), [clidemo], Console(file=io.StringIO())
        )

    assert load_state(run_dir) is None
