"""One trace per folder journey, across every service, as the OTLP collector receives it."""

from __future__ import annotations

import asyncio
from pathlib import Path

from mutualis_cli.journey.scenario import DEMO_PASSWORD, Journey
from mutualis_kernel.testing.otlp import ReceivedSpan
from mutualis_kernel.testing.span_capture import SpanCapture
from mutualis_trust.testing import minimal_pdf

from .conftest import RunningPlatform

SERVICES = {"identity", "parapheur", "archive", "notifications"}


async def test_a_folder_journey_is_one_trace_through_every_service(
    running_platform: RunningPlatform, tmp_path: Path
) -> None:
    capture = SpanCapture()  # this process's own spans: the journey's root
    result = await Journey(running_platform.urls, "floirac", out_dir=tmp_path).run(
        minimal_pdf("Arrêté de Floirac")
    )
    root = next(s for s in capture.spans if s.name == "journey folder")
    root_id = f"{root.context.span_id:016x}"

    def complete(spans: list[ReceivedSpan]) -> bool:
        # Services export in batches: wait until every span's parent has arrived too.
        ids = {s.span_id for s in spans} | {root_id}
        return (
            {s.service for s in spans} >= SERVICES
            and any(s.kind == "consumer" and s.service == "archive" for s in spans)
            # the archivist's seal request comes last: its server span is the last to export
            and {s.service for s in spans if s.kind == "server"}
            >= {"identity", "parapheur", "archive"}
            and all(s.parent_span_id in ids for s in spans)
        )

    spans: list[ReceivedSpan] = []
    for _ in range(150):
        spans = running_platform.receiver.trace(result.trace_id)
        if complete(spans):
            break
        await asyncio.sleep(0.2)

    assert {s.service for s in spans} >= SERVICES, {s.service for s in spans}
    by_id = {s.span_id: s for s in spans}
    for span in spans:
        assert span.parent_span_id in by_id or span.parent_span_id == root_id, (
            f"{span.service} {span.name} hangs from an unknown parent"
        )

    # The archive's ingest is a child of the parapheur's folder.completed publish.
    ingest = next(
        s
        for s in spans
        if s.service == "archive" and s.name == "process parapheur.folder.completed"
    )
    publish = by_id[ingest.parent_span_id]
    assert (publish.service, publish.kind) == ("parapheur", "producer")
    assert ingest.attributes["messaging.system"] == "nats"
    assert ingest.attributes["mutualis.tenant"] == "floirac"
    assert publish.attributes["messaging.destination.name"].endswith(".folder.completed")

    server_spans = [s for s in spans if s.kind == "server"]
    assert {s.service for s in server_spans} >= {"identity", "parapheur", "archive"}
    # A request made with a token carries the token's tenant (never a header's).
    parapheur_requests = [s for s in server_spans if s.service == "parapheur"]
    assert parapheur_requests
    assert all(s.attributes.get("mutualis.tenant") == "floirac" for s in parapheur_requests)

    # The signature waited for the timestamping authority: a CLIENT span in the same trace.
    tsa_calls = [s for s in spans if s.kind == "client" and s.service == "parapheur"]
    assert tsa_calls, "no HTTP client span for the TSA under the signature"
    assert all(by_id.get(s.parent_span_id) or s.parent_span_id == root_id for s in tsa_calls)
    for span in spans:
        assert span.resource.get("cloud.availability_zone") == "dc1"

    # The journal seal is a trace of its own that links back to the journey it sealed.
    seal = None
    for _ in range(100):
        seal = next(
            (
                s
                for s in running_platform.receiver.spans
                if s.name == "archive.journal.seal"
                and any(trace_id == result.trace_id for trace_id, _ in s.links)
            ),
            None,
        )
        if seal is not None:
            break
        await asyncio.sleep(0.2)
    assert seal is not None, "no journal seal span links to the journey"
    assert seal.trace_id != result.trace_id
    assert seal.attributes["mutualis.tenant"] == "floirac"

    # No personal data in spans: no addresses, no passwords, no names.
    for span in spans:
        text = repr(span.attributes)
        assert "@example.org" not in text
        assert DEMO_PASSWORD not in text
