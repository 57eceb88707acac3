"""Complete folder journeys per second, and latency from submission to archived + notified,
on a whole three-datacenter platform, with tracing on and with tracing off, same run.

Each mode starts its own platform the way a developer does (`mutualis up --detach` on free
loopback ports: 3 nats-server, the dev TSA, the mail/SMS sinks, identity, parapheur, archive
and notifications as real processes), runs `mutualis_cli.journey.scenario.Journey`s with
`IN_FLIGHT` at once, then `mutualis down`. A journey is the whole day of `mutualis demo`:
four password logins and a TOTP step-up through identity, circuit definition, submission,
visa, PAdES signature, seal, download, archive ingest seen through the API, journal sealing
(RFC 3161) and vault verification, the emails in the sink.

Tracing on: every service exports spans over OTLP (HTTP/protobuf) to an `OtlpReceiver` in
this process (batch delay 200 ms, as the e2e tests). Tracing off: the same environment plus
`OTEL_SDK_DISABLED=true`, which `mutualis_kernel.telemetry.setup_telemetry` honours by
installing no provider (the receiver stays up, to show that nothing arrives). The bench
process itself installs no tracer provider in either mode.

Latency: from the submission request leaving the client (an httpx request hook) to the later
of the archive record's `ingested_at` (read from the archive API's answer the journey polls)
and the `received_at` of the submitter's completion email in the mail sink.

Journeys are spread over the tenants so no signatory needs two TOTP codes in one 30 s window
(a code is single-use; the login helper would otherwise wait for the next window); the
warm-up journey uses a tenant the measured ones do not.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from bench.harness import latency_summary_ms, ratio
from mutualis_cli.demo import platform_urls
from mutualis_cli.journey.scenario import Journey, JourneyResult, PlatformUrls, people
from mutualis_cli.ports import free_up_options
from mutualis_cli.rundir import load_state
from mutualis_kernel.tenants import default_tenants
from mutualis_kernel.testing.otlp import OtlpReceiver
from mutualis_trust.testing import minimal_pdf
from notifications.devsinks import list_mail

IN_FLIGHT = 3


class TimedJourney(Journey):
    """A `Journey` that notes when its submission left and when its record was ingested."""

    submitted_at: float | None = None
    ingested_at: float | None = None

    def _client(self, timeout: float = 30) -> httpx.AsyncClient:  # type: ignore[override]
        client = Journey._client(timeout)

        async def on_request(request: httpx.Request) -> None:
            if request.method == "POST" and request.url.path == "/v1/folders":
                self.submitted_at = time.time()

        async def on_response(response: httpx.Response) -> None:
            request = response.request
            if (
                self.ingested_at is None
                and request.method == "GET"
                and "/v1/archive/" in request.url.path
                and "/records/" in request.url.path
                and response.status_code == 200
            ):
                await response.aread()
                self.ingested_at = datetime.fromisoformat(
                    response.json()["ingested_at"]
                ).timestamp()

        client.event_hooks["request"].append(on_request)
        client.event_hooks["response"].append(on_response)
        return client


def mutualis(*args: str, env: dict[str, str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mutualis_cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"mutualis {args[0]} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        )


@contextmanager
def platform(run_dir: Path, env: dict[str, str]) -> Iterator[PlatformUrls]:
    started = time.monotonic()
    try:
        mutualis(
            "up",
            "--detach",
            "--run-dir",
            str(run_dir),
            *free_up_options(),
            env=env,
        )
        state = load_state(run_dir)
        assert state is not None
        print(f"   platform up in {time.monotonic() - started:.0f}s", flush=True)
        yield platform_urls(state)
    finally:
        mutualis("down", "--run-dir", str(run_dir), env=env)


async def completion_mail_at(
    urls: PlatformUrls, result: JourneyResult, timeout_s: float = 120
) -> float:
    """When the submitter's completion email reached the sink (waiting for it if need be: the
    journey stops at the first email to anyone involved)."""
    assert urls.mail_dir is not None
    submitter = f"{people(result.tenant)['submitter'].username}@example.org"
    deadline = time.monotonic() + timeout_s
    while True:
        mails = list_mail(urls.mail_dir)
        times = [
            float(m["received_at"])
            for m in mails
            # The completion email names the folder by its title only; each submitter has one
            # folder per platform here (one journey per tenant), so the subject identifies it.
            if submitter in m.get("to", [])
            and str(m.get("subject", "")).startswith("Dossier terminé")
        ]
        if times:
            return min(times)
        if time.monotonic() > deadline:
            seen = [(m.get("to"), m.get("subject")) for m in mails[-20:]]
            raise RuntimeError(f"no completion email to {submitter} for {result.folder_id}: {seen}")
        await asyncio.sleep(0.1)


async def journeys(
    urls: PlatformUrls, tenants: list[str], out_dir: Path
) -> tuple[float, list[float], list[float]]:
    """Run one journey per tenant, `IN_FLIGHT` at once: (elapsed, latencies, journey seconds)."""
    queue = iter(tenants)
    done: list[tuple[TimedJourney, float, float]] = []

    async def worker() -> None:
        for tenant in queue:
            journey = TimedJourney(urls, tenant, out_dir=out_dir, timeout_s=120)
            journey_started = time.monotonic()
            result = await journey.run(minimal_pdf(f"Arrêté municipal — {tenant}"))
            mailed_at = await completion_mail_at(urls, result)
            assert journey.submitted_at is not None
            assert journey.ingested_at is not None
            latency = max(journey.ingested_at, mailed_at) - journey.submitted_at
            done.append((journey, latency, time.monotonic() - journey_started))

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
    elapsed = time.perf_counter() - started
    return elapsed, [latency for _, latency, _ in done], [whole for _, _, whole in done]


async def one_mode(
    tmp: Path, name: str, tracing: bool, tenants: list[str], warm_tenant: str
) -> dict[str, Any]:
    receiver = OtlpReceiver()
    env = {
        **os.environ,
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_SDK_DISABLED": "false" if tracing else "true",
    }
    print(f"-- {name}", flush=True)
    with receiver.running(), platform(tmp / name / "run", env) as urls:
        await Journey(urls, warm_tenant, out_dir=tmp / name / "pdf").run(minimal_pdf("warm-up"))
        spans_before = len(receiver.spans)
        elapsed, latencies, seconds = await journeys(urls, tenants, tmp / name / "pdf")
        await asyncio.sleep(1.0)  # the last batch of spans
        spans = len(receiver.spans) - spans_before
    return {
        "journeys": len(tenants),
        "elapsed_s": round(elapsed, 2),
        "journeys_per_s": round(len(tenants) / elapsed, 3),
        "submission_to_archived_and_notified": latency_summary_ms(latencies),
        "whole_journey": latency_summary_ms(seconds),
        "spans_received": spans,
        "spans_per_journey": round(spans / len(tenants), 1),
    }


async def run(quick: bool = False) -> dict[str, Any]:
    all_tenants = list(default_tenants().slugs)
    warm_tenant, measured = all_tenants[0], all_tenants[1:]
    if quick:
        measured = measured[:4]
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp_name:
        tmp = Path(tmp_name)
        traced = await one_mode(tmp, "tracing_on", True, measured, warm_tenant)
        untraced = await one_mode(tmp, "tracing_off", False, measured, warm_tenant)
    on, off = traced["journeys_per_s"], untraced["journeys_per_s"]
    lat_on = traced["submission_to_archived_and_notified"]
    lat_off = untraced["submission_to_archived_and_notified"]
    return {
        "workload": {
            "journeys_per_mode": len(measured),
            "in_flight": IN_FLIGHT,
            "tenants": measured,
            "platform": "mutualis up --detach: 3 nats-server (one per DC), one instance of "
            "each service, dev TSA, mail/SMS sinks, all on loopback",
            "journey": "4 password logins + TOTP step-up, circuit PUT, submit, visa, PAdES "
            "B-T signature, seal, download, archive ingest, journal seal, verify, emails",
        },
        "tracing_on": traced,
        "tracing_off": untraced,
        "tracing_cost": {
            "throughput_ratio_on_to_off": ratio(on, off),
            "throughput_cost": round(1 - on / off, 3) if off else float("nan"),
            "p50_latency_cost": round(lat_on["p50_ms"] / lat_off["p50_ms"] - 1, 3),
            "p99_latency_cost": round(lat_on["p99_ms"] / lat_off["p99_ms"] - 1, 3),
            "target_max_cost": 0.10,
        },
    }
