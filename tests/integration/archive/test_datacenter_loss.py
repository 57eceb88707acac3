"""A datacenter killed in the middle of ingests loses no acknowledged record."""

from __future__ import annotations

import hashlib
import json

import httpx
import pytest

from archive.adapters.timestamper import RemoteTsa
from archive.bootstrap import wire
from archive.manifest import MANIFEST
from archive.settings import ArchiveSettings
from integration.archive.conftest import sample_metadata
from mutualis_kernel.runner import open_platform
from mutualis_kernel.runtime.cluster import LocalCluster
from mutualis_kernel.testing.issuer import TestIssuer
from mutualis_trust.pki import DevPki


@pytest.mark.slow
async def test_no_acknowledged_record_is_lost_when_a_datacenter_dies(
    fresh_cluster: LocalCluster, tmp_path: object
) -> None:
    from pathlib import Path

    tmp = Path(str(tmp_path))
    pki = DevPki.create(tmp / "pki")
    issuer = TestIssuer()
    async with issuer.running():
        settings = ArchiveSettings(
            dev_mode=True,
            nats_urls=fresh_cluster.urls_for("dc1"),
            issuer_url=issuer.issuer,
            tsa_ca_file=pki.ca_pem_path,
            work_dir=tmp,
        )
        platform = await open_platform(settings, MANIFEST)
        wiring = await wire(platform, RemoteTsa("http://127.0.0.1:9/tsa", pki.ca_pem_path))
        headers = issuer.bearer("a1", "bordeaux", roles=("agent",))
        acknowledged: dict[str, str] = {}
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=wiring.app, raise_app_exceptions=False),
            base_url="http://archive",
            timeout=60,
        ) as http:
            for i in range(30):
                if i == 10:
                    fresh_cluster.kill("dc2")
                content = f"%PDF-1.7 document {i}\n".encode() * 1000
                for _attempt in range(20):  # a client retries with the same idempotency key
                    response = await http.post(
                        "/v1/archive/bordeaux/records",
                        headers=headers,
                        data={
                            "metadata": json.dumps(sample_metadata()),
                            "idempotency_key": f"k{i}",
                        },
                        files={"file": ("d.pdf", content)},
                    )
                    if response.status_code == 201:
                        acknowledged[response.json()["record_id"]] = hashlib.sha256(
                            content
                        ).hexdigest()
                        break
            for record_id, sha256 in acknowledged.items():
                record, _ = await wiring.app.state.archive.records.load("bordeaux", record_id)
                assert record is not None
                assert record.content.sha256 == sha256
                fixity = await wiring.app.state.archive.content.fixity(record.content.object_name)
                assert fixity.sha256 == sha256
        assert len(acknowledged) == 30
        await platform.nc.close()
