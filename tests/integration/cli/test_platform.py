"""`mutualis up`, `status`, `down` and `reset` against real nats-server processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from mutualis_cli.main import app
from mutualis_cli.rundir import load_state
from mutualis_cli.supervisor import process_alive, wait_gone

from .conftest import Ports


def test_up_detached_runs_three_datacenters_with_kernel_streams_one_replica_in_each(
    cli: CliRunner, run_dir: Path, ports: Ports
) -> None:
    started = cli.invoke(app, ["up", *ports.up_args(run_dir), "--detach"])
    assert started.exit_code == 0, started.output
    assert "dc1-n1" in started.output

    status = cli.invoke(app, ["status", "--run-dir", str(run_dir), "--json"])

    assert status.exit_code == 0, status.output
    report = json.loads(status.stdout)
    assert {n["datacenter"]: n["healthy"] for n in report["nodes"]} == {
        "dc1": True,
        "dc2": True,
        "dc3": True,
    }
    assert report["meta_leader"] in {"dc1-n1", "dc2-n1", "dc3-n1"}
    streams = {s["name"]: s for s in report["streams"]}
    for name in ("DEAD_LETTERS", "REPLAYS"):
        assert streams[name]["replicas"] == 3
        assert streams[name]["datacenters"] == ["dc1", "dc2", "dc3"]
        assert streams[name]["leader_datacenter"] in {"dc1", "dc2", "dc3"}
    assert report["dead_letters"] == {}


def test_down_stops_every_process_and_keeps_the_data(
    cli: CliRunner, run_dir: Path, ports: Ports
) -> None:
    assert cli.invoke(app, ["up", *ports.up_args(run_dir), "--detach"]).exit_code == 0
    state = load_state(run_dir)
    assert state is not None
    pids = [n.pid for n in state.nodes if n.pid is not None]
    assert len(pids) == 3
    assert all(process_alive(pid) for pid in pids)

    stopped = cli.invoke(app, ["down", "--run-dir", str(run_dir)])

    assert stopped.exit_code == 0, stopped.output
    assert not any(process_alive(pid) for pid in pids)
    assert load_state(run_dir) is None
    assert (run_dir / "nats" / "dc1-n1").is_dir()


def test_status_still_answers_with_a_datacenter_dead(
    cli: CliRunner, run_dir: Path, ports: Ports
) -> None:
    assert cli.invoke(app, ["up", *ports.up_args(run_dir), "--detach"]).exit_code == 0
    state = load_state(run_dir)
    assert state is not None
    dead = state.nodes[2]
    assert dead.pid is not None
    os.kill(dead.pid, signal.SIGKILL)
    assert wait_gone([dead.pid], 10)

    status = cli.invoke(app, ["status", "--run-dir", str(run_dir), "--json"])

    assert status.exit_code == 1  # degraded
    report = json.loads(status.stdout)
    health = {n["datacenter"]: n["healthy"] for n in report["nodes"]}
    assert health == {"dc1": True, "dc2": True, "dc3": False}


def test_a_taken_port_is_refused_with_exit_2_naming_the_port_and_its_option(
    cli: CliRunner, run_dir: Path, ports: Ports
) -> None:
    taken = ports.nats + 1
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", taken))
        squatter.listen()

        result = cli.invoke(app, ["up", *ports.up_args(run_dir), "--detach"])

    assert result.exit_code == 2
    assert f"port {taken}" in result.output
    assert "--nats-port" in result.output
    assert "Traceback" not in result.output
    assert load_state(run_dir) is None


def test_single_runs_one_node_with_streams_of_one_replica(
    cli: CliRunner, run_dir: Path, ports: Ports
) -> None:
    assert cli.invoke(app, ["up", *ports.up_args(run_dir), "--single", "--detach"]).exit_code == 0

    report = json.loads(cli.invoke(app, ["status", "--run-dir", str(run_dir), "--json"]).stdout)

    assert [n["name"] for n in report["nodes"]] == ["dc1-n1"]
    replicas = {s["name"]: s["replicas"] for s in report["streams"]}
    assert {"DEAD_LETTERS", "REPLAYS"} <= set(replicas)
    assert set(replicas.values()) == {1}


def test_reset_stops_everything_and_deletes_the_data(
    cli: CliRunner, run_dir: Path, ports: Ports
) -> None:
    assert cli.invoke(app, ["up", *ports.up_args(run_dir), "--single", "--detach"]).exit_code == 0
    state = load_state(run_dir)
    assert state is not None

    result = cli.invoke(app, ["reset", "--run-dir", str(run_dir), "--yes"])

    assert result.exit_code == 0, result.output
    assert not any(process_alive(n.pid) for n in state.nodes if n.pid)
    assert not run_dir.exists()


def test_attached_up_follows_until_down_from_another_terminal_stops_it(
    cli: CliRunner, run_dir: Path, ports: Ports
) -> None:
    supervisor = subprocess.Popen(
        [sys.executable, "-m", "mutualis_cli.main", "up", *ports.up_args(run_dir), "--single"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert supervisor.stdout is not None
        for line in supervisor.stdout:  # the table is printed once everything is ready
            if "following service logs" in line:
                break
        state = load_state(run_dir)
        assert state is not None
        assert state.supervisor_pid == supervisor.pid

        assert cli.invoke(app, ["down", "--run-dir", str(run_dir)]).exit_code == 0

        assert supervisor.wait(timeout=30) == 0
        assert "NATS stopped" in supervisor.stdout.read()
        assert not any(process_alive(n.pid) for n in state.nodes if n.pid)
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait()
