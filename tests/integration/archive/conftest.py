"""The archive in-process on a real 3-DC cluster, a real dev TSA (openssl) and a stand-in issuer.

The official SEDA 2.2 XSDs come from setup (`make seda-schemas`); `seda_xsd_dir` runs the same
script (a no-op once they are there), so `pytest` alone works from a clean clone too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest

from archive.adapters.timestamper import RemoteTsa
from archive.bootstrap import wire
from archive.manifest import MANIFEST
from archive.service_layer.handlers import ArchiveService
from archive.settings import ArchiveSettings
from mutualis_kernel.runner import Platform, Wiring, open_platform
from mutualis_kernel.runtime.cluster import LocalCluster
from mutualis_kernel.testing.issuer import TestIssuer
from mutualis_trust.pki import DevPki
from mutualis_trust.tsa import DevTsa

ROOT = Path(__file__).resolve().parents[3]
FETCH_SEDA = ROOT / "infra" / "scripts" / "fetch-seda-xsd.sh"


@dataclass
class ArchiveEnv:
    http: httpx.AsyncClient
    issuer: TestIssuer
    service: ArchiveService
    platform: Platform
    pki: DevPki
    tmp: Path
    wiring: Wiring

    def headers(
        self, tenant: str, roles: tuple[str, ...] = ("archivist",), sub: str = "a1"
    ) -> dict[str, str]:
        return self.issuer.bearer(sub, tenant, roles=roles)

    async def ingest(
        self,
        tenant: str,
        content: bytes,
        *,
        key: str,
        metadata: dict[str, Any] | None = None,
        roles: tuple[str, ...] = ("agent",),
        **form: str,
    ) -> httpx.Response:
        return await self.http.post(
            f"/v1/archive/{tenant}/records",
            headers=self.headers(tenant, roles),
            data={
                "metadata": json.dumps(metadata or sample_metadata()),
                "idempotency_key": key,
                **form,
            },
            files={"file": ("document.pdf", content, "application/octet-stream")},
        )


def sample_metadata(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "title": "Délibération du conseil municipal n°12",
        "originating_service": "secretariat-general",
        "document_type": "deliberation",
        "document_date": "2024-03-01",
        "retention": {"duration": "P10Y", "final_action": "destroy", "start_date": "2024-03-01"},
        "communicability_delay": "P0D",
        "keywords": ["urbanisme", "budget"],
    }
    base.update(overrides)
    return base


def expired_metadata(final_action: str = "destroy", **overrides: Any) -> dict[str, Any]:
    return sample_metadata(
        retention={"duration": "P1Y", "final_action": final_action, "start_date": "2001-01-01"},
        document_date="2001-01-01",
        **overrides,
    )


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> DevPki:
    return DevPki.create(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def seda_xsd_dir() -> Path:
    """The official SEDA 2.2 XSDs where the archive reads them (this interpreter's prefix)."""
    done = subprocess.run(
        ["bash", str(FETCH_SEDA), "--print-path"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHON": sys.executable},
    )
    assert done.returncode == 0, f"{FETCH_SEDA} failed ({done.returncode}): {done.stderr}"
    return Path(done.stdout.strip().splitlines()[-1])


@contextlib.asynccontextmanager
async def running_archive(
    cluster: LocalCluster, pki: DevPki, tmp_path: Path, **overrides: Any
) -> AsyncIterator[ArchiveEnv]:
    """The archive wired as in production (`wire`), with settings `overrides`."""
    issuer = TestIssuer()
    chain = tmp_path / "chain.pem"
    chain.write_bytes(pki.tsa_cert_path.read_bytes() + pki.ca_pem_path.read_bytes())
    async with issuer.running(), DevTsa.running(pki, state_dir=tmp_path / "tsa") as tsa_url:
        settings = ArchiveSettings(
            **{
                "dev_mode": True,
                "nats_urls": cluster.client_urls,
                "issuer_url": issuer.issuer,
                "tsa_url": tsa_url,
                "tsa_ca_file": pki.ca_pem_path,
                "tsa_chain_file": chain,
                "work_dir": tmp_path,
                **overrides,
            }
        )
        platform = await open_platform(settings, MANIFEST)
        try:
            timestamper = RemoteTsa(tsa_url, pki.ca_pem_path, chain)
            wiring = await wire(platform, timestamper)
            transport = httpx.ASGITransport(app=wiring.app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://archive", timeout=60
            ) as http:
                yield ArchiveEnv(
                    http, issuer, wiring.app.state.archive, platform, pki, tmp_path, wiring
                )
        finally:
            await platform.nc.close()


@pytest.fixture
async def archive(
    nats_cluster: LocalCluster, pki: DevPki, tmp_path: Path
) -> AsyncIterator[ArchiveEnv]:
    async with running_archive(nats_cluster, pki, tmp_path) as env:
        yield env


@pytest.fixture
def today() -> date:
    return date.today()


__all__ = ["ArchiveEnv", "asyncio", "expired_metadata", "running_archive", "sample_metadata"]
