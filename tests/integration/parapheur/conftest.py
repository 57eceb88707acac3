"""A real parapheur in-process: the composition root on the real 3-DC NATS cluster, tokens from
the stand-in issuer, signatures by mutualis_trust on a real SoftHSM token with a dev TSA."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from identity.manifest import MANIFEST as IDENTITY_MANIFEST
from mutualis_kernel.auth import LOA_SUBSTANTIAL
from mutualis_kernel.runner import Platform, Wiring, open_platform
from mutualis_kernel.runtime import LocalCluster
from mutualis_kernel.streams import apply_resources_patiently
from mutualis_kernel.tenants import default_tenants
from mutualis_kernel.testing.issuer import TestIssuer
from mutualis_trust.identities import SigningIdentities
from mutualis_trust.pkcs11 import Token
from mutualis_trust.testing import TrustEnv, minimal_pdf
from parapheur.adapters.signing import TrustSigner
from parapheur.bootstrap import wire
from parapheur.manifest import MANIFEST
from parapheur.service_layer.ports import DocumentSigner
from parapheur.settings import ParapheurSettings

MAX_DOCUMENT_BYTES = 2_000_000

ARRETE = {
    "id": "arrete",
    "name": "Arrêté",
    "steps": [
        {"kind": "visa", "actors": [{"kind": "desk", "id": "secretariat"}]},
        {"kind": "signature", "actors": [{"kind": "user", "id": "bob"}]},
        {"kind": "seal"},
    ],
}
SEAL_ONLY = {"id": "sceau", "name": "Certificat", "steps": [{"kind": "seal"}]}
VISA_ONLY = {
    "id": "note",
    "name": "Note interne",
    "steps": [
        {
            "kind": "visa",
            "actors": [{"kind": "desk", "id": "secretariat"}, {"kind": "user", "id": "dave"}],
        }
    ],
}


@dataclass
class Parapheur:
    http: httpx.AsyncClient
    issuer: TestIssuer
    platform: Platform
    wiring: Wiring

    def agent(
        self,
        sub: str,
        tenant: str = "bordeaux",
        *roles: str,
        substantial: bool = False,
        name: str | None = None,
    ) -> dict[str, str]:
        """An agent's token; `name` as identity's OpenID Connect `name` claim."""
        return self.issuer.bearer(
            sub,
            tenant,
            roles=("agent", *roles),
            acr=LOA_SUBSTANTIAL if substantial else None,
            extra={"name": name} if name else None,
        )

    def admin(self, tenant: str = "bordeaux") -> dict[str, str]:
        return self.agent("admin", tenant, "tenant-admin")

    async def circuit(self, body: dict[str, object], tenant: str = "bordeaux") -> None:
        response = await self.http.put(
            f"/v1/circuits/{body['id']}", json=body, headers=self.admin(tenant)
        )
        assert response.status_code == 200, response.text

    async def submit(
        self,
        headers: dict[str, str],
        circuit_id: str = "arrete",
        pdf: bytes | None = None,
        **extra: object,
    ) -> httpx.Response:
        metadata = {"title": "Arrêté de voirie", "circuit_id": circuit_id, **extra}
        files = [
            (
                "document",
                ("arrete.pdf", pdf if pdf is not None else minimal_pdf(), "application/pdf"),
            ),
            ("attachments", ("annexe.txt", b"annexe", "text/plain")),
        ]
        import json

        return await self.http.post(
            "/v1/folders", data={"metadata": json.dumps(metadata)}, files=files, headers=headers
        )

    async def act(
        self, folder: str, step: int, action: str, headers: dict[str, str], comment: str = ""
    ) -> httpx.Response:
        return await self.http.post(
            f"/v1/folders/{folder}/steps/{step}/{action}",
            json={"comment": comment},
            headers=headers,
        )

    async def history(self, folder: str) -> list[str]:
        response = await self.http.get(
            f"/v1/folders/{folder}/history", headers=self.agent("reader")
        )
        return [e["type"] for e in response.json()]


@pytest.fixture
def signer(trust_env: TrustEnv) -> Iterator[DocumentSigner]:
    token = Token.connect(trust_env.token)
    try:
        yield TrustSigner(
            SigningIdentities(trust_env.pki, token),
            default_tenants(),
            tsa_url=trust_env.tsa_url,
            level="B-T",
        )
    finally:
        token.close()


def settings_for(cluster: LocalCluster, work_dir: Path) -> ParapheurSettings:
    return ParapheurSettings(
        nats_urls=cluster.urls_for("dc1"),
        dev_mode=True,
        stream_replicas=3,
        work_dir=work_dir,
        reminder_before_s=1.0,
        max_document_bytes=MAX_DOCUMENT_BYTES,
        log_level="WARNING",
    )


@contextlib.asynccontextmanager
async def running_parapheur(
    cluster: LocalCluster, issuer: TestIssuer, signer: DocumentSigner | None, work_dir: Path
) -> AsyncIterator[Parapheur]:
    platform = await open_platform(settings_for(cluster, work_dir), MANIFEST)
    # identity's stream, whose user.erased events the parapheur follows.
    await apply_resources_patiently(platform.js, IDENTITY_MANIFEST.resources, 3)
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    wiring: Wiring | None = None
    try:
        wiring = await wire(platform, signer=signer, verifier=issuer.verifier("mutualis:parapheur"))
        tasks = [asyncio.create_task(c.run(stop)) for c in wiring.consumers]
        tasks += [asyncio.create_task(loop(stop)) for loop in wiring.background]
        transport = httpx.ASGITransport(app=wiring.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://parapheur") as http:
            yield Parapheur(http, issuer, platform, wiring)
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 20)
        for hook in wiring.on_stop if wiring else []:
            await hook()
        await platform.nc.drain()


@pytest.fixture
async def issuer() -> AsyncIterator[TestIssuer]:
    stand_in = TestIssuer()
    async with stand_in.running():
        yield stand_in


@pytest.fixture
async def parapheur(
    nats_cluster: LocalCluster, issuer: TestIssuer, signer: DocumentSigner, tmp_path: Path
) -> AsyncIterator[Parapheur]:
    async with running_parapheur(nats_cluster, issuer, signer, tmp_path) as running:
        await running.circuit(ARRETE)
        await running.circuit(VISA_ONLY)
        yield running


async def eventually(predicate, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    """Poll `predicate` (async) until it holds; no fixed sleeps in the tests."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.1)
