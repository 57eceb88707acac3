"""`mutualis backup` and `mutualis restore`: the kernel's JetStream backups from the command line.

This module parses options, finds the servers (the same `--nats-url` / `--run-dir` logic as
every other command, through `mutualis_cli.target`), calls `mutualis_kernel.backup` and prints
its report. The backup format and protocol belong to the kernel, not here.

Exit codes: 0 done (and, for a restore, every stream holds what the backup held), 1 failure,
2 a usage problem (a directory that already holds a backup, streams that already exist).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, NoReturn

import nats.errors
import typer
from nats.js.errors import Error as JetStreamError
from rich.console import Console
from rich.table import Table

from mutualis_cli.options import JsonOutput, NatsUrls, RunDir
from mutualis_cli.rundir import DEFAULT_RUN_DIR, StateUnreadable
from mutualis_cli.target import NoTarget, connect, resolve
from mutualis_kernel.backup import (
    BackupCorrupted,
    BackupError,
    BackupExists,
    BackupReport,
    RestoreReport,
    StreamsExist,
    backup_all,
    restore_all,
)

console = Console(highlight=False)
errors = Console(stderr=True, highlight=False)

#: Generous: a snapshot or restore API call answers quickly, but on a loaded cluster not always.
API_TIMEOUT_S = 10.0


def _fail(message: str, code: int = 1) -> NoReturn:
    errors.print(f"[red]error:[/] {message}", soft_wrap=True)
    raise typer.Exit(code)


def _urls(run_dir: Path, nats_urls: list[str] | None) -> list[str]:
    try:
        urls, _ = resolve(run_dir, nats_urls)
    except (NoTarget, StateUnreadable) as error:
        _fail(str(error))
    return urls


def backup_command(
    out: Annotated[
        Path, typer.Option("--out", help="New directory for the backup (must hold no backup).")
    ],
    run_dir: RunDir = DEFAULT_RUN_DIR,
    nats_url: NatsUrls = None,
    streams: Annotated[
        list[str] | None,
        typer.Option("--stream", help="Only this stream (repeatable); default: every stream."),
    ] = None,
    as_json: JsonOutput = False,
) -> None:
    """Back up every stream, KV bucket and object store (JetStream snapshots) into --out.

    Durable consumers' positions are in the snapshots too. Each stream is consistent on its
    own; the backup is not one instant across streams.
    """
    urls = _urls(run_dir, _given(nats_url))

    async def run() -> BackupReport:
        nc = await connect(urls)
        try:
            return await backup_all(nc.jetstream(timeout=API_TIMEOUT_S), out, streams=streams)
        finally:
            await nc.close()

    try:
        report = asyncio.run(run())
    except NoTarget as error:
        _fail(str(error))
    except BackupExists as error:
        _fail(str(error), 2)
    except BackupError as error:
        _fail(str(error))
    except (nats.errors.Error, JetStreamError, TimeoutError) as error:
        _fail(f"backup failed, {out} is incomplete (it has no manifest): {error!r}")
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
        return
    table = Table(title=f"backup in {report.directory}")
    for column in ("stream", "kind", "messages", "last seq", "consumers", "size"):
        table.add_column(column, justify="left" if column in ("stream", "kind") else "right")
    for stream in report.streams:
        table.add_row(
            stream.name,
            stream.kind,
            str(stream.messages),
            str(stream.last_seq),
            str(stream.consumers),
            _size(sum(f.size for f in stream.files)),
        )
    console.print(table)
    for skipped in report.skipped:
        console.print(f"[yellow]skipped[/] {skipped.name}: {skipped.reason}")
    console.print(
        f"{len(report.streams)} streams, {_size(report.total_bytes)} "
        f"in {report.duration_s:.1f}s; restore with `mutualis restore --from {report.directory}`"
    )


def restore_command(
    source: Annotated[Path, typer.Option("--from", help="Directory written by `mutualis backup`.")],
    run_dir: RunDir = DEFAULT_RUN_DIR,
    nats_url: NatsUrls = None,
    replicas: Annotated[
        int | None,
        typer.Option(
            min=1, max=5, help="Replicas per stream; default: what each stream had when backed up."
        ),
    ] = None,
    replace: Annotated[
        bool,
        typer.Option(
            "--replace", help="Delete streams that already exist, then restore them (data loss)."
        ),
    ] = False,
    as_json: JsonOutput = False,
) -> None:
    """Restore a backup into the cluster: every stream, KV bucket, object store and consumer.

    The whole backup is checked against its manifest first; a damaged or incomplete backup is
    refused before anything is touched. Existing streams are refused unless --replace.
    """
    urls = _urls(run_dir, _given(nats_url))

    async def run() -> RestoreReport:
        nc = await connect(urls)
        try:
            return await restore_all(
                nc.jetstream(timeout=API_TIMEOUT_S), source, replicas=replicas, replace=replace
            )
        finally:
            await nc.close()

    try:
        report = asyncio.run(run())
    except NoTarget as error:
        _fail(str(error))
    except BackupCorrupted as error:
        _fail(f"backup refused, nothing restored: {error}")
    except StreamsExist as error:
        _fail(str(error), 2)
    except BackupError as error:
        _fail(str(error))
    except (nats.errors.Error, JetStreamError, TimeoutError) as error:
        _fail(f"restore failed part-way (run it again with --replace): {error!r}")
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
    else:
        table = Table(title=f"restored from {report.directory} ({report.backup_created_at:%c})")
        for column in ("stream", "kind", "replicas", "messages", "last seq", "consumers", ""):
            table.add_column(column)
        for stream in report.streams:
            table.add_row(
                stream.name,
                stream.kind,
                str(stream.replicas),
                f"{stream.messages}/{stream.messages_expected}",
                f"{stream.last_seq}/{stream.last_seq_expected}",
                str(stream.consumers),
                ("replaced" if stream.replaced else "")
                + ("" if stream.complete else " [red]INCOMPLETE[/]"),
            )
        console.print(table)
    if not report.complete:
        _fail("some streams do not hold what the backup held (see INCOMPLETE above)")


def _given(urls: list[str] | None) -> list[str] | None:
    # Typer gives [] for a repeatable option never passed; `resolve` wants None for "not given".
    return list(urls) if urls else None


def _size(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{count} B"
