"""`mutualis events tail`: live events, decoded, filtered by tenant, type and service."""

from __future__ import annotations

import asyncio
import threading

import nats
from typer.testing import CliRunner, Result

from mutualis_cli.main import app
from mutualis_kernel.events import Envelope, Event, domain_event, encode
from mutualis_kernel.runtime import LocalCluster


@domain_event("demo", "thing.happened", aggregate="thing")
class ThingHappened(Event):
    """Something happened to a thing (test event)."""

    colour: str


Message = tuple[str, dict[str, str], bytes]


def event(tenant: str, colour: str) -> Message:
    return encode(Envelope(data=ThingHappened(colour=colour), tenant=tenant, aggregate_id="t1"))


def tail_while_publishing(
    cluster: LocalCluster, args: list[str], messages: list[Message]
) -> Result:
    """Run the tail, publishing `messages` over and over until it stops (it only sees live ones)."""
    urls = [arg for url in cluster.client_urls for arg in ("--nats-url", url)]
    outcome: list[Result] = []
    worker = threading.Thread(
        target=lambda: outcome.append(
            CliRunner().invoke(app, ["events", "tail", *urls, "--timeout", "30", *args])
        )
    )

    async def publish() -> None:
        nc = await nats.connect(servers=cluster.client_urls)
        try:
            while worker.is_alive():
                for subject, headers, body in messages:
                    await nc.publish(subject, body, headers=headers)
                await asyncio.sleep(0.05)
        finally:
            await nc.close()

    worker.start()
    asyncio.run(publish())
    worker.join()
    return outcome[0]


def test_tail_prints_a_decoded_event(nats_single: LocalCluster) -> None:
    result = tail_while_publishing(nats_single, ["--count", "1"], [event("lyon", "blue")])

    assert result.exit_code == 0, result.output
    assert "mutualis.demo.thing.happened.v1" in result.output
    assert "tenant=lyon" in result.output
    assert '"colour": "blue"' in result.output


def test_tail_keeps_only_the_chosen_tenant(nats_single: LocalCluster) -> None:
    messages = [event("paris", "red"), event("lyon", "green")]

    result = tail_while_publishing(nats_single, ["--tenant", "lyon", "--count", "2"], messages)

    assert result.exit_code == 0, result.output
    assert result.output.count("tenant=lyon") == 2
    assert "paris" not in result.output


def test_tail_filters_by_type_glob(nats_single: LocalCluster) -> None:
    messages = [event("lyon", "green")]

    matching = tail_while_publishing(nats_single, ["--type", "*thing.*", "--count", "1"], messages)
    other = tail_while_publishing(nats_single, ["--type", "*folder.*", "--timeout", "1"], messages)

    assert "thing.happened" in matching.output
    assert other.exit_code == 0, other.output
    assert "thing.happened" not in other.output


def test_tail_shows_why_a_message_is_not_an_event(nats_single: LocalCluster) -> None:
    raw: Message = ("evt.demo.lyon.thing.t2.thing.happened", {"ce-type": "x"}, b"{}")

    result = tail_while_publishing(nats_single, ["--count", "1"], [raw])

    assert result.exit_code == 0, result.output
    assert "undecodable" in result.output
    assert "missing CloudEvents attributes" in result.output
