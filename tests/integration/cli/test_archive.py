"""`mutualis archive verify|seals|seal|seal-export|export|import` against a platform started by
`mutualis up` (three NATS datacenters with TLS and nkeys, the dev PKI and TSA, the archive
service), the way an operator runs them from another terminal: only `--run-dir` is given.

Records are put in the vault through the archive's service layer with the operator's
credentials (no identity provider runs here to hand out an agent's token); everything else
goes through the commands.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import subprocess
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from lxml import etree
from rich.console import Console
from typer.testing import CliRunner, Result

from archive import cli_support
from archive.adapters.content import stage
from archive.domain.commands import Ingest
from archive.domain.model import Record, RecordMetadata
from archive.manifest import CONTENT, journal_subject
from archive.settings import ArchiveSettings
from integration.archive.conftest import sample_metadata, seda_xsd_dir
from mutualis_cli import platform
from mutualis_cli.main import app
from mutualis_cli.ports import free_up_options
from mutualis_cli.rundir import load_state
from mutualis_cli.target import connect, resolve

__all__ = ["seda_xsd_dir"]  # the fixture, shared with the archive's own tests

PDF = b"%PDF-1.7\n% deliberation\n" + b"d" * 6000 + b"\n%%EOF\n"
XML = b"<?xml version='1.0'?><arrete>voirie</arrete>\n" * 80


@dataclass(frozen=True)
class Vault:
    run_dir: Path
    #: The archive's settings as the commands find them in the run dir.
    settings: ArchiveSettings

    def cli(self, *args: str) -> Result:
        # Wide enough that no object name or reason is wrapped across lines.
        return CliRunner().invoke(
            app, ["archive", *args, "--run-dir", str(self.run_dir)], env={"COLUMNS": "250"}
        )


@pytest.fixture(scope="module")
def vault(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Vault]:
    run_dir = tmp_path_factory.mktemp("vault") / "run"
    try:
        up = ["up", "--detach", "--service", "archive", "--run-dir", str(run_dir)]
        started = CliRunner().invoke(app, [*up, *free_up_options()])
        assert started.exit_code == 0, started.output
        state = load_state(run_dir)
        assert state is not None
        assert state.topology.tls
        assert state.topology.nkeys
        assert {s.name for s in state.services} >= {"tsa", "archive"}
        tsa = next(s for s in state.services if s.name == "tsa")
        settings = ArchiveSettings(
            nats_urls=state.client_urls,
            tsa_url=f"{tsa.url}/tsa",
            tsa_ca_file=run_dir / "pki" / "ca.pem",
        )
        yield Vault(run_dir, settings)
    finally:
        if load_state(run_dir) is not None:
            platform.down(run_dir, Console(file=io.StringIO()))


async def _ingest(vault: Vault, tenant: str, documents: dict[str, bytes]) -> list[Record]:
    urls, _ = resolve(vault.run_dir, None)
    nc = await connect(urls)
    try:
        service = cli_support.service_for(nc.jetstream(timeout=10.0), vault.settings)
        records = []
        for key, body in documents.items():
            staged = await stage(io.BytesIO(body))
            try:
                record, _ = await service.ingest(
                    Ingest(
                        tenant=tenant,
                        metadata=RecordMetadata.model_validate(
                            sample_metadata(title=f"Acte {key}", keywords=[key])
                        ),
                        filename=f"{key}.bin",
                        source="api",
                        cause=key,
                        by=cli_support.CLI_ACTOR,
                    ),
                    staged,
                )
            finally:
                staged.discard()
            records.append(record)
        return records
    finally:
        await nc.close()


def ingest(vault: Vault, tenant: str, documents: dict[str, bytes]) -> list[Record]:
    return asyncio.run(_ingest(vault, tenant, documents))


def flip_a_byte(vault: Vault, record: Record) -> None:
    """What a disk fault or an intruder with JetStream rights would leave behind."""

    async def run() -> None:
        urls, _ = resolve(vault.run_dir, None)
        nc = await connect(urls)
        try:
            store = await nc.jetstream(timeout=10.0).object_store(CONTENT)
            original = (await store.get(record.content.object_name)).data or b""
            damaged = bytearray(original)
            damaged[len(damaged) // 2] ^= 0x01
            await store.put(record.content.object_name, bytes(damaged))
        finally:
            await nc.close()

    asyncio.run(run())


def append_an_edited_entry(vault: Vault, tenant: str, seq: int) -> None:
    """The journal denies deletes: an intruder can only append an edited copy of an entry."""

    async def run() -> None:
        urls, _ = resolve(vault.run_dir, None)
        nc = await connect(urls)
        try:
            js = nc.jetstream(timeout=10.0)
            service = cli_support.service_for(js, vault.settings)
            entries = [body async for _, body in service.journal.raw_entries(tenant)]
            edited = json.loads(entries[seq - 1])
            edited["details"]["sha256"] = "0" * 64
            await js.publish(journal_subject(tenant), json.dumps(edited).encode())
        finally:
            await nc.close()

    asyncio.run(run())


def test_verify_passes_on_an_intact_vault_and_names_the_object_whose_byte_was_flipped(
    vault: Vault,
) -> None:
    tenant = "pessac"
    intact, damaged = ingest(vault, tenant, {"deliberation": PDF, "arrete": XML})
    assert vault.cli("seal", "--tenant", tenant).exit_code == 0

    verified = vault.cli("verify", "--tenant", tenant)
    assert verified.exit_code == 0, verified.output
    assert f"{tenant}: intact" in verified.stdout
    assert "2 objects" in verified.stdout
    every_tenant = vault.cli("verify")
    assert every_tenant.exit_code == 0, every_tenant.output

    flip_a_byte(vault, damaged)

    broken = vault.cli("verify", "--tenant", tenant)
    assert broken.exit_code == 1, broken.output
    assert f"{tenant}: BROKEN" in broken.stdout
    assert f"object {damaged.content.object_name} (record {damaged.record_id})" in broken.stdout
    assert intact.content.object_name not in broken.stdout
    as_json = vault.cli("verify", "--tenant", tenant, "--json")
    assert as_json.exit_code == 1
    [report] = json.loads(as_json.stdout)
    assert [p["record_id"] for p in report["broken_objects"]] == [damaged.record_id]
    assert report["first_broken_entry"] is None
    assert report["broken_seals"] == []
    # Every tenant is checked when none is named, and the exit status says one is broken.
    assert vault.cli("verify").exit_code == 1


def test_verify_names_the_first_journal_entry_that_breaks_the_chain(vault: Vault) -> None:
    tenant = "begles"
    ingest(vault, tenant, {"a": XML, "b": PDF, "c": XML + b"c"})
    assert vault.cli("verify", "--tenant", tenant, "--no-objects").exit_code == 0

    append_an_edited_entry(vault, tenant, seq=2)

    broken = vault.cli("verify", "--tenant", tenant, "--no-objects")
    assert broken.exit_code == 1, broken.output
    assert "first broken journal entry: seq 4" in broken.stdout
    assert "objects not checked" in broken.stdout


def test_seals_are_listed_and_an_exported_seal_verifies_with_plain_openssl(
    vault: Vault, tmp_path: Path
) -> None:
    tenant = "talence"
    ingest(vault, tenant, {"budget": PDF})
    sealed = vault.cli("seal", "--tenant", tenant, "--json")
    assert sealed.exit_code == 0, sealed.output
    number = json.loads(sealed.stdout)["number"]

    listed = vault.cli("seals", "--tenant", tenant, "--json")
    assert listed.exit_code == 0, listed.output
    [seal] = [s for s in json.loads(listed.stdout) if s["number"] == number]
    assert seal["first_seq"] == 1
    assert seal["last_seq"] >= 1
    assert seal["merkle_root"] in vault.cli("seals", "--tenant", tenant).stdout

    out = tmp_path / "seal"
    exported = vault.cli("seal-export", str(number), "--tenant", tenant, "--out", str(out))
    assert exported.exit_code == 0, exported.output
    stem = f"{tenant}-seal-{number:06d}"
    data, token, chain = out / f"{stem}.json", out / f"{stem}.tsr", out / f"{stem}-tsa-chain.pem"
    assert json.loads(data.read_bytes())["merkle_root"] == seal["merkle_root"]

    # The command the docs print, run as printed, in the export directory: no Mutualis code.
    command = exported.stdout.split(" && ", 1)[1].strip()
    by_itself = subprocess.run(command.split(), cwd=out, capture_output=True, text=True)
    assert "Verification: OK" in by_itself.stdout, by_itself.stdout + by_itself.stderr
    # Against the platform's own trust anchor rather than the chain shipped with the seal.
    trusted = openssl_verify(data, token, vault.settings.tsa_ca_file)
    assert "Verification: OK" in trusted.stdout, trusted.stdout + trusted.stderr
    assert chain.read_text().startswith("-----BEGIN CERTIFICATE-----")

    tampered = tmp_path / "tampered.json"
    tampered.write_bytes(data.read_bytes().replace(b'"number"', b'"Number"'))
    refused = openssl_verify(tampered, token, vault.settings.tsa_ca_file)
    assert "Verification: OK" not in refused.stdout


def openssl_verify(data: Path, token: Path, ca: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["openssl", "ts", "-verify", "-data", str(data), "-in", str(token), "-CAfile", str(ca)],
        capture_output=True,
        text=True,
    )


def test_export_writes_a_seda_package_that_validates_and_imports_into_another_tenant(
    vault: Vault, tmp_path: Path, seda_xsd_dir: Path
) -> None:
    source, target = "merignac", "le-taillan-medoc"
    first, second, _not_chosen = ingest(
        vault, source, {"plu": PDF, "carte": XML, "autre": PDF + b"x"}
    )
    package = tmp_path / "transfer.zip"

    exported = vault.cli(
        "export",
        "--tenant",
        source,
        "--record",
        first.record_id,
        "--record",
        second.record_id,
        "--out",
        str(package),
    )
    assert exported.exit_code == 0, exported.output
    assert "2 record(s)" in exported.stdout

    with zipfile.ZipFile(package) as transfer:
        manifest = transfer.read("manifest.xml")
        contents = {
            name: hashlib.sha512(transfer.read(name)).hexdigest()
            for name in transfer.namelist()
            if name.startswith("content/")
        }
    parser = etree.XMLParser(no_network=True, resolve_entities=False)
    schema = etree.XMLSchema(etree.parse(str(seda_xsd_dir / "seda-2.2-main.xsd"), parser))
    assert schema.validate(etree.fromstring(manifest, parser)), schema.error_log
    assert sorted(contents.values()) == sorted([first.content.sha512, second.content.sha512])

    again = vault.cli("export", "--tenant", source, "--out", str(package))
    assert again.exit_code == 2  # an existing package is never overwritten

    imported = vault.cli("import", str(package), "--tenant", target, "--json")
    assert imported.exit_code == 0, imported.output
    copies = json.loads(imported.stdout)["record_ids"]
    assert len(copies) == 2
    copied = asyncio.run(_records(vault, target, copies))
    originals = {r.content.sha512: r for r in (first, second)}
    for copy in copied:
        original = originals[copy.content.sha512]
        assert copy.content.sha256 == original.content.sha256
        assert copy.metadata == original.metadata
    assert vault.cli("verify", "--tenant", target).exit_code == 0


async def _records(vault: Vault, tenant: str, record_ids: list[str]) -> list[Record]:
    urls, _ = resolve(vault.run_dir, None)
    nc = await connect(urls)
    try:
        service = cli_support.service_for(nc.jetstream(timeout=10.0), vault.settings)
        found = []
        for record_id in record_ids:
            record, _ = await service.records.load(tenant, record_id)
            assert record is not None
            found.append(record)
        return found
    finally:
        await nc.close()


def test_usage_problems_and_an_absent_platform_have_their_own_exit_codes(
    vault: Vault, tmp_path: Path
) -> None:
    unknown = vault.cli("seals", "--tenant", "gotham")
    assert unknown.exit_code == 2
    assert "not a tenant" in unknown.output

    no_anchor = vault.cli("verify", "--tsa-ca-file", str(tmp_path / "absent.pem"))
    assert no_anchor.exit_code == 2
    assert "no TSA trust anchor" in no_anchor.output

    missing_seal = vault.cli("seal-export", "999", "--tenant", "pessac", "--out", str(tmp_path))
    assert missing_seal.exit_code == 1
    assert "no seal 999" in missing_seal.output

    nothing_running = CliRunner().invoke(
        app, ["archive", "verify", "--run-dir", str(tmp_path / "empty")]
    )
    assert nothing_running.exit_code == 3  # could not check: not the same as "broken"
    assert "mutualis up" in nothing_running.output
