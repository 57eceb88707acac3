"""`mutualis dlq list`, `dlq replay` and the dead-letter counts of `status`, on hand-made ones."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Coroutine
from typing import Any, TypeVar

import nats
import pytest
from nats.js.api import RawStreamMsg
from nats.js.errors import NotFoundError
from typer.testing import CliRunner

from mutualis_cli.main import app
from mutualis_kernel.bus import deadletter
from mutualis_kernel.runtime import LocalCluster
from mutualis_kernel.streams import DEAD_LETTER_STREAM, REPLAY_STREAM

T = TypeVar("T")


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


@pytest.fixture(scope="module")
def target(nats_cluster: LocalCluster) -> list[str]:
    """`--nats-url` options for the shared cluster, with the kernel's streams applied."""
    args = [arg for url in nats_cluster.client_urls for arg in ("--nats-url", url)]
    applied = CliRunner().invoke(app, ["streams", "apply", *args, "--replicas", "3"])
    assert applied.exit_code == 0, applied.output
    return args


@pytest.fixture
def durable() -> str:
    return f"consumer-{uuid.uuid4().hex[:8]}"


async def _dead_letter(urls: list[str], durable: str, reason: str) -> int:
    nc = await nats.connect(servers=urls)
    try:
        ack = await nc.jetstream().publish(
            deadletter.dead_letter_subject(durable),
            b'{"reference": "P-1"}',
            headers={
                "ce-type": "mutualis.demo.thing.happened.v1",
                "ce-id": str(uuid.uuid4()),
                deadletter.REASON: reason,
                deadletter.CONSUMER: durable,
                deadletter.STREAM: "DEMO_EVENTS",
                deadletter.SEQUENCE: "41",
                deadletter.SUBJECT: "evt.demo.lyon.thing.t1.thing.happened",
                deadletter.DELIVERIES: "6",
                deadletter.TIME: "2025-01-02T03:04:05+00:00",
            },
        )
        return ack.seq
    finally:
        await nc.close()


def dead_letter(cluster: LocalCluster, durable: str, reason: str = "boom") -> int:
    return run(_dead_letter(cluster.client_urls, durable, reason))


async def _get(
    urls: list[str], stream: str, seq: int | None = None, last: str | None = None
) -> RawStreamMsg:
    nc = await nats.connect(servers=urls)
    try:
        return await nc.jetstream().get_msg(stream, seq=seq, subject=last)
    finally:
        await nc.close()


def get(
    cluster: LocalCluster, stream: str, *, seq: int | None = None, last: str | None = None
) -> RawStreamMsg:
    return run(_get(cluster.client_urls, stream, seq, last))


def test_list_shows_each_dead_letter_with_its_reason_and_origin(
    nats_cluster: LocalCluster, target: list[str], durable: str
) -> None:
    first = dead_letter(nats_cluster, durable, "payload invalid: reference missing")
    second = dead_letter(nats_cluster, durable, "timeout")

    result = CliRunner().invoke(app, ["dlq", "list", *target, "--consumer", durable, "--json"])

    assert result.exit_code == 0, result.output
    letters = json.loads(result.stdout)
    assert [(d["seq"], d["reason"]) for d in letters] == [
        (first, "payload invalid: reference missing"),
        (second, "timeout"),
    ]
    assert letters[0]["consumer"] == durable
    assert letters[0]["original_subject"] == "evt.demo.lyon.thing.t1.thing.happened"
    assert letters[0]["deliveries"] == 6
    table = CliRunner().invoke(app, ["dlq", "list", *target, "--consumer", durable])
    assert "timeout" in table.output


def test_replay_sends_the_dead_letter_to_its_consumer_and_removes_it(
    nats_cluster: LocalCluster, target: list[str], durable: str
) -> None:
    seq = dead_letter(nats_cluster, durable)

    result = CliRunner().invoke(app, ["dlq", "replay", str(seq), *target])

    assert result.exit_code == 0, result.output
    replayed = get(nats_cluster, REPLAY_STREAM, last=deadletter.replay_subject(durable))
    assert replayed.data == b'{"reference": "P-1"}'
    headers = replayed.headers or {}
    assert headers[deadletter.REPLAY_OF] == str(seq)
    assert headers["Nats-Msg-Id"] == f"replay:{seq}"
    assert headers["ce-type"] == "mutualis.demo.thing.happened.v1"
    assert headers[deadletter.SUBJECT] == "evt.demo.lyon.thing.t1.thing.happened"
    with pytest.raises(NotFoundError):
        get(nats_cluster, DEAD_LETTER_STREAM, seq=seq)


def test_replay_all_of_one_consumer_with_keep_leaves_the_dead_letters(
    nats_cluster: LocalCluster, target: list[str], durable: str
) -> None:
    mine = [dead_letter(nats_cluster, durable), dead_letter(nats_cluster, durable)]
    other = dead_letter(nats_cluster, f"{durable}-other")

    result = CliRunner().invoke(
        app, ["dlq", "replay", "--all", "--consumer", durable, "--keep", "--json", *target]
    )

    assert result.exit_code == 0, result.output
    outcomes = json.loads(result.stdout)
    assert [o["seq"] for o in outcomes] == mine
    assert all(o["replay_subject"] == f"replay.{durable}" and not o["deleted"] for o in outcomes)
    for seq in [*mine, other]:
        assert get(nats_cluster, DEAD_LETTER_STREAM, seq=seq).seq == seq


def test_replay_of_an_unknown_sequence_is_a_clear_error(target: list[str]) -> None:
    result = CliRunner().invoke(app, ["dlq", "replay", "999999", *target])

    assert result.exit_code == 1
    assert "no dead letter with sequence 999999" in result.output


def test_status_counts_dead_letters_per_consumer(
    nats_cluster: LocalCluster, target: list[str], durable: str
) -> None:
    dead_letter(nats_cluster, durable)
    dead_letter(nats_cluster, durable)

    result = CliRunner().invoke(app, ["status", *target, "--json"])

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["dead_letters"][durable] == 2


def test_applying_the_streams_again_changes_nothing(target: list[str]) -> None:
    again = CliRunner().invoke(app, ["streams", "apply", *target, "--replicas", "3"])

    assert again.exit_code == 0, again.output
    summary = again.stdout.strip().splitlines()[-1]
    assert summary.startswith("0 created, 0 updated, "), again.stdout


async def _consumer_behind(urls: list[str], durable: str) -> None:
    """A consumer on the dead-letter stream that received two letters and acked one."""
    nc = await nats.connect(servers=urls)
    try:
        js = nc.jetstream()
        subject = deadletter.dead_letter_subject(durable)
        reader = await js.pull_subscribe(subject, durable=f"{durable}-reader")
        received = []
        while len(received) < 2:
            received.extend(await reader.fetch(2 - len(received), timeout=5))
        await received[0].ack_sync()
    finally:
        await nc.close()


def test_status_shows_what_each_consumer_still_has_to_finish(
    nats_cluster: LocalCluster, target: list[str], durable: str
) -> None:
    for _ in range(3):
        dead_letter(nats_cluster, durable)
    run(_consumer_behind(nats_cluster.client_urls, durable))

    result = CliRunner().invoke(app, ["status", *target, "--json"])

    assert result.exit_code == 0, result.output
    (stream,) = [s for s in json.loads(result.stdout)["streams"] if s["name"] == DEAD_LETTER_STREAM]
    (reader,) = [c for c in stream["consumers"] if c["name"] == f"{durable}-reader"]
    # One never delivered, one delivered but not acknowledged, one done.
    assert (reader["num_pending"], reader["num_ack_pending"], reader["lag"]) == (1, 1, 2)
