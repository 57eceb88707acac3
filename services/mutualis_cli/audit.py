"""`mutualis audit --tenant T --since 2026-11-29T00:00 [--json]`: one tenant's audit trail.

Lists the security-relevant actions (logins, role changes, signatures, archive access,
disposals, holds, admin changes) that `mutualis_kernel.audit` reads from the services' event
streams. Typer wiring and display only; the reading is the kernel's.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from mutualis_cli.rundir import DEFAULT_RUN_DIR
from mutualis_cli.target import NoTarget, connect, resolve
from mutualis_kernel.audit import AuditEntry, AuditReader
from mutualis_kernel.tenants import SLUG_PATTERN


async def read_trail(urls: list[str], tenant: str, since: datetime) -> list[AuditEntry]:
    nc = await connect(urls)
    try:
        return await AuditReader(nc.jetstream()).entries(tenant, since)
    finally:
        await nc.close()


def _since(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not an ISO 8601 date or time") from None
    # A time without a zone is read as UTC, the time the events carry.
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def table(entries: list[AuditEntry]) -> Table:
    view = Table(title=f"Audit trail ({len(entries)} entries)")
    for column in ("time", "service", "action", "actor", "object", "event id"):
        view.add_column(column)
    for entry in entries:
        view.add_row(
            entry.time.isoformat(timespec="seconds"),
            entry.service,
            entry.action,
            entry.actor or "-",
            entry.object,
            entry.event_id,
        )
    return view


def audit(
    tenant: Annotated[str, typer.Option("--tenant", help="The tenant's slug, e.g. bordeaux.")],
    since: Annotated[
        str, typer.Option("--since", help="ISO 8601 start, e.g. 2026-11-29T00:00 (UTC if no zone).")
    ],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a machine-readable document.")
    ] = False,
    nats_url: Annotated[
        list[str] | None,
        typer.Option("--nats-url", help="NATS server URL (repeatable); default: the run dir's."),
    ] = None,
    run_dir: Annotated[
        Path, typer.Option("--run-dir", envvar="MUTUALIS_RUN_DIR", help="Where `mutualis up` runs.")
    ] = DEFAULT_RUN_DIR,
) -> None:
    """List a tenant's security-relevant actions across services since a time."""
    if not SLUG_PATTERN.match(tenant):
        raise typer.BadParameter(f"{tenant!r} is not a tenant slug", param_hint="--tenant")
    start = _since(since)
    errors = Console(stderr=True, highlight=False)
    try:
        urls, _ = resolve(run_dir, nats_url)
        entries = asyncio.run(read_trail(urls, tenant, start))
    except NoTarget as error:
        errors.print(f"[red]error:[/] {error}", soft_wrap=True)
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps([entry.model_dump(mode="json") for entry in entries], indent=2))
        return
    Console(highlight=False).print(table(entries))
