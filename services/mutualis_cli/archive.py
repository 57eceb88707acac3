"""`mutualis archive ...`: check the vault, list, make and export seals, SEDA export and import.

Like `backup`, `audit` and `dlq`, these commands talk to NATS directly, with the operator's
credentials found by `mutualis_cli.target` (`--nats-url` / `--run-dir`), and run the archive's
own service layer in this process (`archive.cli_support`). Not the archive's HTTP API: that
wants an archivist's access token from identity, which an operator's shell does not hold, and
a verification must not depend on the very service it checks being up and honest. Typer
wiring and display only; the work is `archive.cli_support`'s.

Trust anchors and the TSA come from the archive's settings (`MUTUALIS_TSA_CA_FILE`,
`MUTUALIS_TSA_URL`, ...) when set, else from what `mutualis up` made in the run dir (its dev
PKI, its dev TSA); `--tsa-ca-file` overrides both.

Exit codes: 0 done (for `verify`: everything intact), 1 `verify` found something broken or
another command failed, 2 a usage problem (unknown tenant, no trust anchor, an existing
`--out`), 3 `verify` could not complete (no server answers, the cluster stopped answering).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, NoReturn, TypeVar

import nats.errors
import typer
from nats.js import JetStreamContext
from nats.js.errors import Error as JetStreamError
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from archive import cli_support
from archive.adapters.content import ContentUnavailable
from archive.adapters.journal import JournalUnavailable
from archive.domain import errors as archive_errors
from archive.service_layer.reports import SealInfo, VerifyReport
from archive.settings import ArchiveSettings
from mutualis_cli.options import JsonOutput, NatsUrls, RunDir
from mutualis_cli.rundir import DEFAULT_RUN_DIR, RunState, StateUnreadable
from mutualis_cli.target import NoTarget, connect, resolve
from mutualis_kernel.tenants import default_tenants

archive_app = typer.Typer(
    help="The digital vault: verify it, list and export seals, SEDA export and import.",
    no_args_is_help=True,
)
console = Console(highlight=False)
errors = Console(stderr=True, highlight=False)

#: Exit code of a `verify` that could not run to the end (distinct from "found broken": 1).
INCOMPLETE = 3
#: A JetStream API call answers quickly, but on a loaded cluster not always.
API_TIMEOUT_S = 10.0
#: What a cluster that stops answering raises through the archive's adapters.
UNREACHABLE = (
    NoTarget,
    nats.errors.Error,
    JetStreamError,
    TimeoutError,
    ContentUnavailable,
    JournalUnavailable,
)

T = TypeVar("T")

Tenant = Annotated[str, typer.Option("--tenant", help="The tenant's slug, e.g. bordeaux.")]
TsaCaFile = Annotated[
    Path | None,
    typer.Option(
        "--tsa-ca-file",
        help="Trusted root(s) of the TSA, to check seals; default: MUTUALIS_TSA_CA_FILE, "
        "else the dev PKI of the run dir.",
    ),
]


def _fail(message: str, code: int = 1) -> NoReturn:
    errors.print(f"[red]error:[/] {message}", soft_wrap=True)
    raise typer.Exit(code)


def _known_tenant(tenant: str) -> str:
    if tenant not in default_tenants():
        raise typer.BadParameter(
            f"{tenant!r} is not a tenant of this platform ({', '.join(default_tenants().slugs)})",
            param_hint="--tenant",
        )
    return tenant


def _settings(
    run_dir: Path, state: RunState | None, urls: list[str], tsa_ca_file: Path | None
) -> ArchiveSettings:
    """The archive's settings from the environment, completed from the run dir of `up`."""
    try:
        settings = ArchiveSettings(nats_urls=urls)
    except ValidationError as error:
        _fail(f"the archive's settings (MUTUALIS_* variables) are invalid: {error}", 2)
    given = settings.model_fields_set
    update: dict[str, object] = {}
    if tsa_ca_file is not None:
        update["tsa_ca_file"] = tsa_ca_file
    elif "tsa_ca_file" not in given:
        # `mutualis up` keeps its dev PKI in the run dir (mutualis_cli.wiring.prepare_trust).
        update["tsa_ca_file"] = run_dir / "pki" / "ca.pem"
    tsa = next((s for s in state.services if s.name == "tsa"), None) if state else None
    if "tsa_url" not in given and tsa is not None:
        update["tsa_url"] = f"{tsa.url}/tsa"
    return settings.model_copy(update=update)


def _run(
    run_dir: Path,
    nats_urls: list[str] | None,
    tsa_ca_file: Path | None,
    work: Callable[[JetStreamContext, ArchiveSettings], Awaitable[T]],
    *,
    unreachable_code: int = 1,
    needs_trust: bool = False,
) -> T:
    """Find the platform, connect as the operator, run `work`; known failures exit cleanly."""
    try:
        urls, state = resolve(run_dir, list(nats_urls) if nats_urls else None)
    except (NoTarget, StateUnreadable) as error:
        _fail(str(error), unreachable_code)
    settings = _settings(run_dir, state, urls, tsa_ca_file)
    if needs_trust and not settings.tsa_ca_file.is_file():
        # Without it every seal would read as forged: refuse rather than cry wolf.
        _fail(
            f"no TSA trust anchor at {settings.tsa_ca_file} to check seals with: pass "
            "--tsa-ca-file or set MUTUALIS_TSA_CA_FILE",
            2,
        )

    async def run() -> T:
        nc = await connect(urls)
        try:
            return await work(nc.jetstream(timeout=API_TIMEOUT_S), settings)
        finally:
            await nc.close()

    try:
        return asyncio.run(run())
    except archive_errors.ArchiveError as error:
        _fail(error.detail)
    except UNREACHABLE as error:
        _fail(f"the platform stopped answering: {error!r}", unreachable_code)
    except OSError as error:
        # After the ones above (TimeoutError is an OSError): a file that cannot be written.
        _fail(str(error))


@archive_app.command("verify")
def verify(
    tenant: Annotated[
        str | None,
        typer.Option("--tenant", help="Only this tenant; default: every tenant with a journal."),
    ] = None,
    objects: Annotated[
        bool,
        typer.Option("--objects/--no-objects", help="Re-hash every active object (slow)."),
    ] = True,
    tsa_ca_file: TsaCaFile = None,
    run_dir: RunDir = DEFAULT_RUN_DIR,
    nats_url: NatsUrls = None,
    as_json: JsonOutput = False,
) -> None:
    """Check the journal chain, every seal's timestamp token and every object's fixity.

    The chain: each entry's hash and link to the one before. Each seal: its timestamp token
    (`openssl ts -verify` against the trusted TSA root, never the chain stored in the seal),
    its Merkle root over the entries it covers, its link to the previous seal. Each active
    object: SHA-256 and SHA-512 of its content against the record's.

    Exit code 0 when everything is intact, 1 when anything is broken (the report names the
    first broken entry, each broken seal and object), 3 when the check could not complete.
    """
    if tenant is not None:
        _known_tenant(tenant)

    async def work(js: JetStreamContext, settings: ArchiveSettings) -> list[VerifyReport]:
        return await cli_support.verify(js, settings, tenant, check_objects=objects)

    reports = _run(
        run_dir, nats_url, tsa_ca_file, work, unreachable_code=INCOMPLETE, needs_trust=True
    )
    if as_json:
        typer.echo(json.dumps([r.model_dump(mode="json") for r in reports], indent=2))
    else:
        _render_reports(reports, objects)
    if not all(report.ok for report in reports):
        raise typer.Exit(1)


def _render_reports(reports: list[VerifyReport], objects: bool) -> None:
    if not reports:
        console.print("no tenant has an archive journal yet: nothing to verify")
        return
    for report in reports:
        checked = f"{report.entries_checked} journal entries, {report.seals_checked} seals" + (
            f", {report.objects_checked} objects" if objects else " (objects not checked)"
        )
        unsealed = (
            f"; {report.unsealed_entries} entries not sealed yet" if report.unsealed_entries else ""
        )
        if report.ok:
            console.print(f"[green]✓[/] {report.tenant}: intact — {checked}{unsealed}")
            continue
        console.print(f"[red]✗[/] {report.tenant}: BROKEN — {checked}{unsealed}")
        if report.first_broken_entry is not None:
            console.print(
                f"    first broken journal entry: seq {report.first_broken_entry.seq}: "
                f"{report.first_broken_entry.reason}",
                soft_wrap=True,
            )
        for seal in report.broken_seals:
            console.print(f"    seal {seal.number}: {seal.reason}", soft_wrap=True)
        for broken in report.broken_objects:
            console.print(
                f"    object {broken.object_name} (record {broken.record_id}): {broken.reason}",
                soft_wrap=True,
            )
    broken_count = sum(not r.ok for r in reports)
    summary = f"{broken_count} of {len(reports)} broken" if broken_count else "all intact"
    console.print(f"{len(reports)} tenant(s) checked: {summary}")


@archive_app.command("seals")
def seals(
    tenant: Tenant,
    run_dir: RunDir = DEFAULT_RUN_DIR,
    nats_url: NatsUrls = None,
    as_json: JsonOutput = False,
) -> None:
    """List a tenant's seals: the journal entries each covers, when, its Merkle root."""
    _known_tenant(tenant)

    async def work(js: JetStreamContext, settings: ArchiveSettings) -> list[SealInfo]:
        return await cli_support.seals(js, settings, tenant)

    found = _run(run_dir, nats_url, None, work)
    if as_json:
        typer.echo(json.dumps([s.model_dump(mode="json") for s in found], indent=2))
        return
    table = Table(title=f"Seals of {tenant} ({len(found)})")
    for column in ("seal", "entries", "sealed at", "merkle root", "digest"):
        table.add_column(column, justify="right" if column == "seal" else "left")
    for info in found:
        table.add_row(
            str(info.number),
            f"{info.first_seq}-{info.last_seq}",
            info.sealed_at.isoformat(timespec="seconds"),
            info.merkle_root,
            info.digest,
        )
    console.print(table)


@archive_app.command("seal")
def seal(
    tenant: Tenant,
    run_dir: RunDir = DEFAULT_RUN_DIR,
    nats_url: NatsUrls = None,
    as_json: JsonOutput = False,
) -> None:
    """Seal the tenant's journal now (the service does it every MUTUALIS_SEAL_INTERVAL_S)."""
    _known_tenant(tenant)

    async def work(js: JetStreamContext, settings: ArchiveSettings) -> SealInfo | None:
        try:
            return await cli_support.seal(js, settings, tenant)
        except archive_errors.NothingToSeal:
            return None

    info = _run(run_dir, nats_url, None, work)
    if as_json:
        typer.echo(info.model_dump_json(indent=2) if info else "null")
    elif info is None:
        console.print(f"{tenant}: no journal entry since the last seal, nothing to seal")
    else:
        console.print(
            f"{tenant}: seal {info.number} over journal entries {info.first_seq}-{info.last_seq}, "
            f"Merkle root {info.merkle_root}"
        )


@archive_app.command("seal-export")
def seal_export(
    number: Annotated[
        int,
        typer.Argument(
            min=1, metavar="SEAL", help="The seal's number (see `mutualis archive seals`)."
        ),
    ],
    tenant: Tenant,
    out: Annotated[Path, typer.Option("--out", help="Directory to write the three files to.")],
    run_dir: RunDir = DEFAULT_RUN_DIR,
    nats_url: NatsUrls = None,
    as_json: JsonOutput = False,
) -> None:
    """Write one seal's token, the bytes it timestamps and the TSA chain, for openssl.

    Three files in --out: <tenant>-seal-<n>.tsr (the RFC 3161 reply), <tenant>-seal-<n>.json
    (the exact statement bytes timestamped) and <tenant>-seal-<n>-tsa-chain.pem (the chain
    stored with the seal), checked with plain `openssl ts -verify`, without Mutualis.
    """
    _known_tenant(tenant)

    async def work(js: JetStreamContext, settings: ArchiveSettings) -> cli_support.SealExport:
        return await cli_support.seal_export(js, settings, tenant, number, out)

    exported = _run(run_dir, nats_url, None, work)
    if as_json:
        typer.echo(exported.model_dump_json(indent=2))
        return
    for path in (exported.data_file, exported.token_file, exported.chain_file):
        console.print(f"wrote {path}")
    console.print(
        f"check it without Mutualis: cd {exported.directory} && {exported.verify_command}",
        soft_wrap=True,
    )


@archive_app.command("export")
def export(
    tenant: Tenant,
    out: Annotated[Path, typer.Option("--out", help="The SEDA 2.2 package to write (.zip).")],
    record_ids: Annotated[
        list[str] | None,
        typer.Option("--record", help="Only this record (repeatable); default: every active one."),
    ] = None,
    run_dir: RunDir = DEFAULT_RUN_DIR,
    nats_url: NatsUrls = None,
    as_json: JsonOutput = False,
) -> None:
    """Export records as a SEDA 2.2 ArchiveTransfer package (ZIP).

    manifest.xml (validated against the official SEDA 2.2 XSD before anything is written)
    and content/<n>/<file>, each with its SHA-512 digest. Journaled as an export.
    """
    _known_tenant(tenant)
    if out.exists():
        _fail(f"{out} already exists; choose another --out", 2)
    if not out.parent.is_dir():
        _fail(f"{out.parent} is not a directory", 2)
    chosen = list(record_ids) if record_ids else None

    async def work(js: JetStreamContext, settings: ArchiveSettings) -> cli_support.ExportReport:
        return await cli_support.export(js, settings, tenant, out, chosen)

    report = _run(run_dir, nats_url, None, work)
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
        return
    console.print(f"{len(report.record_ids)} record(s) of {tenant} exported to {report.package}")


@archive_app.command("import")
def import_package(
    package: Annotated[Path, typer.Argument(help="A SEDA 2.2 ArchiveTransfer package (.zip).")],
    tenant: Tenant,
    run_dir: RunDir = DEFAULT_RUN_DIR,
    nats_url: NatsUrls = None,
    as_json: JsonOutput = False,
) -> None:
    """Import a SEDA 2.2 package into a tenant: validated, hashes checked, ingested.

    The manifest is validated against the XSD, each file is checked against its digest, and
    each archive unit becomes a record; importing the same package again adds nothing.
    """
    _known_tenant(tenant)
    if not package.is_file():
        _fail(f"{package} is not a file", 2)

    async def work(js: JetStreamContext, settings: ArchiveSettings) -> cli_support.ImportReport:
        return await cli_support.import_package(js, settings, tenant, package)

    report = _run(run_dir, nats_url, None, work)
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
        return
    for record_id in report.record_ids:
        console.print(f"imported {record_id}")
    console.print(f"{len(report.record_ids)} record(s) imported into {tenant}")
