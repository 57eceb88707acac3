"""`mutualis demo`: a commune's working day, run against a platform started by `mutualis up`.

Prints each step as it happens and a summary (folder, signed PDF, archive record and its
fixity, the emails delivered, the trace id). `--count N --rate R` runs N journeys started at R
per second, spread over the tenants given, as a load; `--json` writes the summaries as JSON.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from mutualis_cli.journey.login import LoginFailed
from mutualis_cli.journey.scenario import (
    Journey,
    JourneyFailed,
    JourneyResult,
    PlatformUrls,
    summary_lines,
)
from mutualis_cli.rundir import DEFAULT_RUN_DIR, RunState, load_state
from mutualis_cli.wiring import sinks_dir
from mutualis_kernel import __version__
from mutualis_kernel.tenants import default_tenants

console = Console(highlight=False)


class PlatformNotRunning(RuntimeError):
    pass


def platform_urls(state: RunState) -> PlatformUrls:
    def first(name: str) -> str:
        for service in state.services:
            if service.name == name:
                return service.url
        raise PlatformNotRunning(f"{name} does not run from {state.run_dir}")

    return PlatformUrls(
        identity=first("identity"),
        parapheur=first("parapheur"),
        archive=first("archive"),
        notifications=first("notifications"),
        mail_dir=sinks_dir(Path(state.run_dir)),
    )


async def run_journeys(
    urls: PlatformUrls,
    tenants: list[str],
    count: int,
    rate: float,
    out_dir: Path,
    verbose: bool,
) -> list[JourneyResult | str]:
    from mutualis_trust.testing import minimal_pdf

    async def one(index: int) -> JourneyResult | str:
        await asyncio.sleep(index / rate if rate > 0 else 0)
        tenant = tenants[index % len(tenants)]
        prefix = f"[{tenant} #{index + 1}] " if count > 1 else ""

        def show(text: str) -> None:
            if verbose:
                console.print(f"  {prefix}[green]✓[/] {text}")

        journey = Journey(urls, tenant, out_dir=out_dir, on_step=show)
        try:
            return await journey.run(minimal_pdf(f"Arrêté de démonstration — {tenant} #{index}"))
        except (JourneyFailed, LoginFailed) as error:
            console.print(f"  {prefix}[red]✗[/] {error}")
            return f"{tenant} #{index + 1}: {error}"

    return list(await asyncio.gather(*(one(i) for i in range(count))))


def demo(
    run_dir: Annotated[
        Path, typer.Option("--run-dir", envvar="MUTUALIS_RUN_DIR", help="Where `up` runs.")
    ] = DEFAULT_RUN_DIR,
    tenant: Annotated[
        list[str] | None, typer.Option("--tenant", help="Commune(s) to run it for (repeatable).")
    ] = None,
    count: Annotated[int, typer.Option(min=1, help="How many journeys.")] = 1,
    rate: Annotated[float, typer.Option(min=0, help="Journeys started per second.")] = 1.0,
    out_dir: Annotated[
        Path | None, typer.Option(help="Where signed PDFs go (default <run-dir>/demo).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summaries as JSON.")] = False,
) -> None:
    """Run the scenario: login, submit, visa, step-up and signature, seal, archive, notify."""
    from mutualis_kernel.telemetry import setup_telemetry

    state = load_state(run_dir.resolve())
    if state is None:
        console.print("[red]error:[/] nothing runs from this run dir: start it with `mutualis up`")
        raise typer.Exit(1)
    try:
        urls = platform_urls(state)
    except PlatformNotRunning as error:
        console.print(f"[red]error:[/] {error}")
        raise typer.Exit(1) from None
    tenants = tenant or ["bordeaux"]
    unknown = [t for t in tenants if t not in default_tenants()]
    if unknown:
        console.print(f"[red]error:[/] unknown tenant(s) {unknown}")
        raise typer.Exit(2)
    telemetry = setup_telemetry("mutualis-demo", service_version=__version__, datacenter="dc1")
    started = time.monotonic()
    results = asyncio.run(
        run_journeys(
            urls,
            tenants,
            count,
            rate,
            out_dir or Path(state.run_dir) / "demo",
            verbose=not as_json,
        )
    )
    elapsed = time.monotonic() - started
    telemetry.shutdown()
    done = [r for r in results if isinstance(r, JourneyResult)]
    failed = [r for r in results if isinstance(r, str)]
    if as_json:
        console.print_json(
            json.dumps(
                {
                    "journeys": [asdict(r) for r in done],
                    "failed": failed,
                    "seconds": round(elapsed, 3),
                    "journeys_per_s": round(len(done) / elapsed, 3) if elapsed else None,
                },
                default=str,
            )
        )
    else:
        for result in done[:3]:
            console.print()
            for line in summary_lines(result):
                console.print(f"  {line}")
        if done and os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
            console.print(
                f"\n  see the trace in your tracing UI, e.g. Jaeger: "
                f"http://localhost:16686/trace/{done[0].trace_id}"
            )
        if count > 1:
            console.print(
                f"\n  {len(done)}/{count} journeys in {elapsed:.1f}s ({len(done) / elapsed:.2f}/s)"
            )
    if failed:
        raise typer.Exit(1)
