"""The small pieces of the command line: state file, log following, tail filters, serve."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from mutualis_cli.main import app
from mutualis_cli.rundir import (
    NodeState,
    RunState,
    TopologyState,
    load_state,
    save_state,
    wipe_data,
)
from mutualis_cli.supervisor import LogFollower
from mutualis_cli.tail import TailFilter


def state(run_dir: Path) -> RunState:
    return RunState(
        run_dir=str(run_dir),
        topology=TopologyState(
            datacenters=["dc1"],
            replicas=1,
            client_port_base=4222,
            monitor_port_base=8222,
            cluster_port_base=6222,
            service_port_base=8001,
        ),
        nodes=[
            NodeState(
                name="dc1-n1",
                datacenter="dc1",
                client_url="nats://127.0.0.1:4222",
                monitor_url="http://127.0.0.1:8222",
                client_port=4222,
                monitor_port=8222,
                cluster_port=6222,
                pid=123,
            )
        ],
    )


def test_state_round_trips_through_the_run_dir(tmp_path: Path) -> None:
    save_state(state(tmp_path))

    loaded = load_state(tmp_path)

    assert loaded is not None
    assert loaded.client_urls == ["nats://127.0.0.1:4222"]
    assert loaded.datacenter_of("dc1-n1") == "dc1"


def test_wipe_deletes_what_up_wrote_and_nothing_else(tmp_path: Path) -> None:
    save_state(state(tmp_path))
    (tmp_path / "nats" / "dc1-n1").mkdir(parents=True)
    (tmp_path / "notes.txt").write_text("mine")

    wipe_data(tmp_path)

    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_log_follower_hands_out_only_new_complete_lines(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_text("before start\n")
    follower = LogFollower({"a@dc1": log})
    seen: list[tuple[str, str]] = []

    with log.open("a") as handle:
        handle.write("one\ntw")
    follower.poll(lambda label, line: seen.append((label, line)))
    with log.open("a") as handle:
        handle.write("o\n")
    follower.poll(lambda label, line: seen.append((label, line)))

    assert seen == [("a@dc1", "one"), ("a@dc1", "two")]


@pytest.mark.parametrize(
    ("chosen", "subject"),
    [
        (TailFilter(), "evt.>"),
        (TailFilter(tenant="lyon"), "evt.*.lyon.>"),
        (TailFilter(service="parapheur"), "evt.parapheur.*.>"),
        (TailFilter(service="parapheur", tenant="lyon"), "evt.parapheur.lyon.>"),
    ],
)
def test_tail_filters_by_subject_tokens(chosen: TailFilter, subject: str) -> None:
    assert chosen.subject == subject


def test_tail_type_pattern_is_a_glob_on_the_cloudevents_type() -> None:
    chosen = TailFilter(type_pattern="*folder.*")

    assert chosen.accepts_type("mutualis.parapheur.folder.submitted.v1")
    assert not chosen.accepts_type("mutualis.identity.user.created.v1")
    assert not chosen.accepts_type(None)


def test_serve_refuses_an_unknown_service_naming_the_known_ones() -> None:
    result = CliRunner().invoke(app, ["serve", "nope"])

    assert result.exit_code == 2
    assert "unknown service 'nope'" in result.output
    assert "identity, parapheur, archive, notifications" in result.output


def test_commands_need_a_running_platform_or_a_url(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["dlq", "list", "--run-dir", str(tmp_path)])

    assert result.exit_code == 1
    assert "mutualis up" in result.output


@pytest.mark.parametrize(
    "command",
    [
        ["up"],
        ["down"],
        ["reset"],
        ["status"],
        ["serve"],
        ["streams", "apply"],
        ["events", "tail"],
        ["dlq", "list"],
        ["dlq", "replay"],
    ],
)
def test_every_command_explains_itself(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"])

    assert result.exit_code == 0
    assert "Usage" in result.output
