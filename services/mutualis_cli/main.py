"""Entry point of the `mutualis` command: Typer wiring only.

Each command parses its options, calls the module that owns the work (`platform`, `status`,
`deadletters`, `tail`, `serve`, `resources`) and turns known failures into a clear message
and an exit code: 1 for a failure, 2 for a usage problem such as a port already taken.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from nats.js.errors import APIError
from rich.console import Console

from mutualis_cli import deadletters, platform, status, tail
from mutualis_cli.archive import archive_app
from mutualis_cli.audit import audit as audit_command
from mutualis_cli.backup import backup_command, restore_command
from mutualis_cli.demo import demo as run_demo
from mutualis_cli.dev import app as dev_app
from mutualis_cli.drill import drill as run_drill
from mutualis_cli.k8s import k8s_app
from mutualis_cli.options import JsonOutput, NatsUrls, RunDir
from mutualis_cli.resources import apply_platform_resources, report_lines
from mutualis_cli.rundir import DEFAULT_RUN_DIR, RunState, StateUnreadable, wipe_data
from mutualis_cli.serve import UnknownService
from mutualis_cli.serve import serve as serve_service
from mutualis_cli.supervisor import ServiceNotReady
from mutualis_cli.target import NoTarget, connect, resolve
from mutualis_kernel.runtime import ClusterNotReady, PortInUse
from mutualis_kernel.service import installed_manifests
from mutualis_kernel.streams import StreamUpdateRefused

app = typer.Typer(
    help="Mutualis: run the platform locally and operate it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
streams_app = typer.Typer(
    help="JetStream streams, buckets and object stores.", no_args_is_help=True
)
events_app = typer.Typer(help="Watch the events flowing on the bus.", no_args_is_help=True)
dlq_app = typer.Typer(help="Dead letters: list them, send them back.", no_args_is_help=True)
app.add_typer(streams_app, name="streams")
app.add_typer(events_app, name="events")
app.add_typer(dlq_app, name="dlq")
app.add_typer(k8s_app, name="k8s")
app.add_typer(dev_app, name="dev")
app.add_typer(archive_app, name="archive")
app.command()(run_demo)
app.command("drill")(run_drill)
app.command("audit")(audit_command)
app.command("backup")(backup_command)
app.command("restore")(restore_command)

console = Console(highlight=False)
errors = Console(stderr=True, highlight=False)


def fail(message: str, code: int = 1) -> NoReturn:
    errors.print(f"[red]error:[/] {message}", soft_wrap=True)
    raise typer.Exit(code)


def target(run_dir: Path, nats_urls: list[str] | None) -> tuple[list[str], RunState | None]:
    try:
        return resolve(run_dir, nats_urls)
    except (NoTarget, StateUnreadable) as error:
        fail(str(error))


# -- platform lifecycle ---------------------------------------------------------------------
@app.command()
def up(
    run_dir: RunDir = DEFAULT_RUN_DIR,
    single: Annotated[
        bool, typer.Option("--single", help="One NATS node (R1) instead of three datacenters.")
    ] = False,
    ha: Annotated[
        bool,
        typer.Option("--ha", help="One instance of each service per datacenter (ports +10 each)."),
    ] = False,
    nats_port: Annotated[
        int, typer.Option(help="Client port of dc1's node; the others follow (4223, 4224).")
    ] = 4222,
    nats_monitor_port: Annotated[
        int, typer.Option(help="Monitoring port of dc1's node; the others follow.")
    ] = 8222,
    nats_cluster_port: Annotated[
        int, typer.Option(help="Cluster route port of dc1's node; the others follow.")
    ] = 6222,
    port_base_services: Annotated[
        int,
        typer.Option(help="HTTP port of the first service (identity); the others follow."),
    ] = 8001,
    detach: Annotated[
        bool,
        typer.Option("--detach", help="Start everything, then return, leaving it running."),
    ] = False,
    no_services: Annotated[
        bool, typer.Option("--no-services", help="Start NATS and apply resources only.")
    ] = False,
    only: Annotated[
        list[str] | None,
        typer.Option(
            "--service", help="Start only this service (repeatable); default: every installed one."
        ),
    ] = None,
    tls: Annotated[
        bool,
        typer.Option(
            "--tls/--no-tls",
            help="TLS to NATS and mutual TLS between datacenters, with a dev CA in the run dir.",
        ),
    ] = True,
    nkeys: Annotated[
        bool,
        typer.Option(
            "--nkeys/--no-nkeys",
            help="Each service authenticates with its own nkey and gets only its permissions.",
        ),
    ] = True,
) -> None:
    """Start NATS in three datacenters (or one) and every installed service, then follow logs.

    Stops everything on Ctrl-C or SIGTERM. With --detach, returns once all is ready; stop it
    later with `mutualis down`.
    """
    options = platform.UpOptions(
        run_dir=run_dir,
        single=single,
        ha=ha,
        nats_port=nats_port,
        nats_monitor_port=nats_monitor_port,
        nats_cluster_port=nats_cluster_port,
        port_base_services=port_base_services,
        no_services=no_services,
        tls=tls,
        nkeys=nkeys,
    )
    try:
        manifests = installed_manifests()
        if only:
            unknown = sorted(set(only) - {m.name for m in manifests})
            if unknown:
                raise platform.BadOptions(
                    f"not installed: {', '.join(unknown)}; "
                    f"installed: {', '.join(m.name for m in manifests)}"
                )
            manifests = [m for m in manifests if m.name in only]
        state = platform.start_platform(
            options, manifests, console, supervisor_pid=None if detach else os.getpid()
        )
    except (PortInUse, platform.BadOptions) as error:
        fail(str(error), 2)
    except (platform.AlreadyRunning, StateUnreadable) as error:
        fail(str(error))
    except (
        ServiceNotReady,
        ClusterNotReady,
        TimeoutError,
        NoTarget,
        StreamUpdateRefused,
        APIError,
    ) as error:
        # APIError's str names the JetStream error code and description (its repr is empty).
        fail(f"start failed, everything stopped: {error}")
    except KeyboardInterrupt:
        fail("interrupted; everything started was stopped", 130)
    console.print(platform.placement_table(state))
    if (how_to_log_in := platform.login_help(state)) is not None:
        console.print(how_to_log_in, highlight=False)
    if detach:
        console.print(f"running in the background; stop with `mutualis down --run-dir {run_dir}`")
        return
    platform.follow_until_stopped(state, console)
    platform.stop_platform(state, console)


@app.command()
def down(run_dir: RunDir = DEFAULT_RUN_DIR) -> None:
    """Stop what `mutualis up` started (services, then NATS); data is kept."""
    try:
        stopped = platform.down(run_dir, console)
    except StateUnreadable as error:
        fail(str(error))
    if not stopped:
        console.print(f"nothing to stop in {run_dir}")


@app.command()
def reset(
    run_dir: RunDir = DEFAULT_RUN_DIR,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Stop everything, then delete the run dir's data: NATS stores, logs and state."""
    if not yes:
        typer.confirm(f"delete every stream and log under {run_dir}?", abort=True)
    # An unreadable state file names nothing to stop; it is deleted with the rest.
    with contextlib.suppress(StateUnreadable):
        platform.down(run_dir, console)
    removed = wipe_data(run_dir)
    console.print(f"removed {len(removed)} entries from {run_dir}")


@app.command("status")
def status_command(
    run_dir: RunDir = DEFAULT_RUN_DIR,
    nats_url: NatsUrls = None,
    as_json: JsonOutput = False,
) -> None:
    """Nodes per datacenter, meta leader, streams and their leaders, lag, dead letters, services.

    Exit code 0 when everything is up and ready, 1 otherwise.
    """
    urls, state = target(run_dir, nats_url)
    report = asyncio.run(status.gather_status(str(run_dir), urls, state))
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
    else:
        status.render(report, console)
    if not report.healthy:
        raise typer.Exit(1)


@app.command()
def serve(
    service: Annotated[str, typer.Argument(help="identity, parapheur, archive or notifications")],
) -> None:
    """Run one service in this process (the container entry point)."""
    try:
        serve_service(service)
    except UnknownService as error:
        fail(str(error), 2)


@app.command()
def version() -> None:
    """Print the version."""
    from mutualis_kernel import __version__

    typer.echo(__version__)


# -- streams --------------------------------------------------------------------------------
@streams_app.command("apply")
def streams_apply(
    run_dir: RunDir = DEFAULT_RUN_DIR,
    nats_url: NatsUrls = None,
    replicas: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=5,
            help="Replicas per stream; default: the running topology's, "
            "or 3 when the server is clustered.",
        ),
    ] = None,
) -> None:
    """Create or update the kernel's and every installed service's resources (idempotent)."""
    urls, state = target(run_dir, nats_url)
    if replicas is None:
        replicas = (
            state.topology.replicas
            if state is not None and not nats_url
            else asyncio.run(_guess_replicas(urls))
        )
    try:
        report = asyncio.run(apply_platform_resources(urls, installed_manifests(), replicas))
    except (NoTarget, StreamUpdateRefused, APIError) as error:
        fail(str(error))
    for line in report_lines(report):
        console.print(line)
    console.print(
        f"{len(report.created)} created, {len(report.updated)} updated, "
        f"{len(report.unchanged)} unchanged (replicas {replicas})"
    )


async def _guess_replicas(urls: list[str]) -> int:
    # A clustered server announces its peers to clients; a lone one announces none.
    try:
        nc = await connect(urls)
    except NoTarget as error:
        fail(str(error))
    try:
        return 3 if len(nc.servers) >= 3 else 1
    finally:
        await nc.close()


# -- events ---------------------------------------------------------------------------------
@events_app.command("tail")
def events_tail(
    run_dir: RunDir = DEFAULT_RUN_DIR,
    nats_url: NatsUrls = None,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant (commune).")] = None,
    type_pattern: Annotated[
        str | None,
        typer.Option("--type", help="Glob on the CloudEvents type, e.g. '*folder.*'."),
    ] = None,
    service: Annotated[str | None, typer.Option(help="Only events of this service.")] = None,
    count: Annotated[int | None, typer.Option(min=1, help="Stop after this many events.")] = None,
    timeout: Annotated[
        float | None, typer.Option(min=0, help="Stop after this many seconds.")
    ] = None,
) -> None:
    """Print live events, decoded; undecodable messages are shown with the reason."""
    urls, _ = target(run_dir, nats_url)
    installed_manifests()  # registers the installed services' event types for decoding
    chosen = tail.TailFilter(tenant=tenant, type_pattern=type_pattern, service=service)
    try:
        asyncio.run(tail.tail(urls, chosen, console, count=count, timeout=timeout))
    except NoTarget as error:
        fail(str(error))
    except KeyboardInterrupt:
        pass


# -- dead letters ---------------------------------------------------------------------------
@dlq_app.command("list")
def dlq_list(
    run_dir: RunDir = DEFAULT_RUN_DIR,
    nats_url: NatsUrls = None,
    consumer: Annotated[
        str | None, typer.Option(help="Only the dead letters of this durable consumer.")
    ] = None,
    as_json: JsonOutput = False,
) -> None:
    """Every dead letter: sequence, consumer, reason, original subject, deliveries, time."""
    urls, _ = target(run_dir, nats_url)

    async def read() -> list[deadletters.DeadLetter]:
        nc = await connect(urls)
        try:
            js = nc.jetstream(timeout=5.0)
            found = await deadletters.read_dead_letters(js, consumer)
            return [deadletters.describe(message) for message in found]
        finally:
            await nc.close()

    try:
        letters = asyncio.run(read())
    except NoTarget as error:
        fail(str(error))
    if as_json:
        typer.echo(json.dumps([letter.model_dump(mode="json") for letter in letters], indent=2))
    else:
        deadletters.render_list(letters, console)


@dlq_app.command("replay")
def dlq_replay(
    seqs: Annotated[
        list[int] | None, typer.Argument(help="Sequences of the dead letters to replay.")
    ] = None,
    run_dir: RunDir = DEFAULT_RUN_DIR,
    nats_url: NatsUrls = None,
    all_of: Annotated[bool, typer.Option("--all", help="Replay every dead letter.")] = False,
    consumer: Annotated[
        str | None, typer.Option(help="Only the dead letters of this durable consumer.")
    ] = None,
    keep: Annotated[
        bool, typer.Option("--keep", help="Keep the dead letters after replaying them.")
    ] = False,
    as_json: JsonOutput = False,
) -> None:
    """Send dead letters back to their consumer through REPLAYS, then delete them."""
    if not seqs and not all_of:
        fail("name the sequences to replay, or pass --all", 2)
    if seqs and all_of:
        fail("pass sequences or --all, not both", 2)
    urls, _ = target(run_dir, nats_url)

    async def run() -> list[deadletters.ReplayOutcome]:
        nc = await connect(urls)
        try:
            js = nc.jetstream(timeout=5.0)
            return await deadletters.replay_many(
                js, seqs or [], all_of=all_of, consumer=consumer, keep=keep
            )
        finally:
            await nc.close()

    try:
        outcomes = asyncio.run(run())
    except (NoTarget, deadletters.DeadLetterMissing) as error:
        fail(str(error))
    if as_json:
        typer.echo(json.dumps([o.model_dump(mode="json") for o in outcomes], indent=2))
        return
    for outcome in outcomes:
        note = " (duplicate: already replayed)" if outcome.duplicate else ""
        kept = "deleted" if outcome.deleted else "kept"
        console.print(
            f"dead letter {outcome.seq} -> {outcome.replay_subject} "
            f"(REPLAYS seq {outcome.replay_seq}){note}; {kept}"
        )
    console.print(f"{len(outcomes)} replayed")


# -- development helpers --------------------------------------------------------------------
pki_app = typer.Typer(help="The development PKI and signing token.", no_args_is_help=True)
app.add_typer(pki_app, name="pki")


@pki_app.command("init")
def pki_init(run_dir: RunDir = DEFAULT_RUN_DIR) -> None:
    """Create the dev PKI (root CA, TSA certificate) and the SoftHSM token (idempotent)."""
    from mutualis_cli.wiring import prepare_trust, trust_available

    if not trust_available():
        fail("the trust library or openssl is not installed")
    env = prepare_trust(run_dir.resolve())
    for name, value in sorted(env.items()):
        shown = "(hidden)" if name.endswith("PIN") else value
        console.print(f"{name}={shown}")


@app.command()
def mail(run_dir: RunDir = DEFAULT_RUN_DIR, as_json: JsonOutput = False) -> None:
    """What the dev mail sink received: the emails the platform "sent"."""
    from mutualis_cli.wiring import sinks_dir

    try:
        from notifications.devsinks import list_mail
    except ModuleNotFoundError:
        fail("the notifications service is not installed")
    messages = list_mail(sinks_dir(run_dir.resolve()))
    if as_json:
        console.print_json(json.dumps(messages, default=str))
        return
    if not messages:
        console.print("no mail received yet")
        return
    for message in messages:
        received = datetime.fromtimestamp(float(message.get("received_at", 0)), UTC)
        console.print(
            f"{received:%Y-%m-%d %H:%M:%S}  {', '.join(message.get('to', []))}  "
            f"{message.get('subject', '')}"
        )


@app.command()
def restart(
    label: Annotated[str, typer.Argument(help="The instance, e.g. parapheur@dc1.")],
    run_dir: RunDir = DEFAULT_RUN_DIR,
    kill: Annotated[
        bool, typer.Option("--kill", help="SIGKILL instead of a graceful SIGTERM (a crash).")
    ] = False,
) -> None:
    """Stop one service instance and start it again with the same settings."""
    try:
        service = platform.restart_service(
            run_dir.resolve(), label, installed_manifests(), kill=kill
        )
    except (platform.BadOptions, platform.AlreadyRunning) as error:
        fail(str(error), 2)
    except ServiceNotReady as error:
        fail(str(error))
    console.print(f"[green]✓[/] {service.label} restarted (pid {service.pid}) at {service.url}")


if __name__ == "__main__":
    app()
