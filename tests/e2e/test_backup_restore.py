"""The disaster that takes more than one datacenter: a backup restored into a fresh cluster.

After a commune's working day, `mutualis backup` of the running platform, then `mutualis
restore` into a new, empty cluster; there the archive's own verification finds every record,
journal entry, seal (checked against the TSA) and object intact, and the signed PDF parapheur
stored comes back byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import nats

from archive.manifest import PARAPHEUR_DOCUMENTS
from mutualis_cli.journey.scenario import Journey
from mutualis_kernel.runtime import LocalCluster
from mutualis_trust.testing import minimal_pdf

from .conftest import RunningPlatform


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def mutualis(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mutualis_cli.main", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


async def test_a_fresh_cluster_restored_from_a_backup_holds_every_record_signature_and_seal(
    running_platform: RunningPlatform, fresh_cluster: LocalCluster, tmp_path: Path
) -> None:
    result = await Journey(running_platform.urls, "pessac", out_dir=tmp_path).run(
        minimal_pdf("Arrêté de Pessac")
    )
    assert result.record_id, result.steps
    assert result.journal_seal, result.steps
    backup = tmp_path / "backup"
    made = running_platform.cli("backup", "--out", str(backup))
    assert made.returncode == 0, made.stdout + made.stderr

    # The new cluster knows nothing of the old one: no run dir, plain NATS.
    nowhere = str(tmp_path / "no-run-dir")
    target = [f"--nats-url={url}" for url in fresh_cluster.client_urls]
    restored = mutualis("restore", "--from", str(backup), "--run-dir", nowhere, *target)
    assert restored.returncode == 0, restored.stdout + restored.stderr

    ca = running_platform.run_dir / "pki" / "ca.pem"
    verified = mutualis(
        "archive", "verify", "--tenant", "pessac", "--json", "--tsa-ca-file", str(ca),
        "--run-dir", nowhere, *target,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stdout + verified.stderr
    [report] = json.loads(verified.stdout)
    assert report["ok"] is True
    assert report["seals_checked"] >= 1
    assert report["objects_checked"] >= 1

    nc = await nats.connect(servers=fresh_cluster.client_urls)
    try:
        js = nc.jetstream()
        documents = await js.object_store(PARAPHEUR_DOCUMENTS)
        names = [info.name for info in await documents.list()]
        copies = [tmp_path / f"copy-{n}" for n in range(len(names))]
        for name, copy in zip(names, copies, strict=True):
            with copy.open("wb") as sink:
                await documents.get(name, writeinto=sink)  # type: ignore[arg-type]
    finally:
        await nc.close()
    assert sha256_of(Path(result.signed_pdf)) in {sha256_of(copy) for copy in copies}
