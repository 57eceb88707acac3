"""`mutualis audit --tenant T --since ...` prints one tenant's trail, as a table or as JSON."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import nats
import typer
from typer.testing import CliRunner

from identity.domain.events import RoleRevoked
from identity.manifest import MANIFEST as IDENTITY
from mutualis_cli.audit import audit
from mutualis_kernel.bus.publisher import EventPublisher
from mutualis_kernel.runtime import LocalCluster
from mutualis_kernel.streams import apply_resources_patiently

command = typer.Typer()
command.command()(audit)


async def publish_revocation(cluster: LocalCluster) -> str:
    nc = await nats.connect(servers=cluster.client_urls)
    try:
        js = nc.jetstream()
        await apply_resources_patiently(js, IDENTITY.resources, cluster.replicas)
        stored = await EventPublisher(js, source_service="identity").publish(
            RoleRevoked(user_id="u-bob", tenant="pessac", role="signatory", roles=(), by="u-admin"),
            tenant="pessac",
            aggregate_id="u-bob",
        )
        return stored.envelope.id
    finally:
        await nc.close()


def test_audit_prints_the_tenants_trail_as_json_and_as_a_table(
    nats_cluster: LocalCluster,
) -> None:
    since = (datetime.now(UTC) - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M")
    event_id = asyncio.run(publish_revocation(nats_cluster))
    urls = [arg for url in nats_cluster.client_urls for arg in ("--nats-url", url)]
    runner = CliRunner()

    as_json = runner.invoke(command, ["--tenant", "pessac", "--since", since, "--json", *urls])
    assert as_json.exit_code == 0, as_json.output
    [entry] = json.loads(as_json.output)
    assert entry["action"] == "identity.role.revoked"
    assert entry["actor"] == "u-admin"
    assert entry["event_id"] == event_id

    as_table = runner.invoke(
        command, ["--tenant", "pessac", "--since", since, *urls], env={"COLUMNS": "200"}
    )
    assert as_table.exit_code == 0, as_table.output
    assert "identity.role.revoked" in as_table.output


def test_audit_refuses_a_bad_tenant_or_date() -> None:
    runner = CliRunner()
    bad_tenant = runner.invoke(command, ["--tenant", "Bad Tenant", "--since", "2026-11-29"])
    assert bad_tenant.exit_code == 2
    bad_date = runner.invoke(command, ["--tenant", "pessac", "--since", "yesterday"])
    assert bad_date.exit_code == 2
