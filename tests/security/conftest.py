"""Each service under attack: its real app on the real 3-DC cluster, a way to mint its tokens,
and one object seeded in the victim tenant (`bordeaux`) whose traces must never reach an
attacker.

identity signs its own tokens (it verifies them with its own keys); the other services get
theirs from the stand-in `TestIssuer`, and are built the way their own integration tests
build them.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from mutualis_kernel.auth import LOA_SUBSTANTIAL
from mutualis_kernel.runtime import LocalCluster
from mutualis_kernel.testing.issuer import TestIssuer

VICTIM = "bordeaux"
ATTACKER = "merignac"
SERVICES = ("identity", "parapheur", "archive", "notifications")

Mint = Callable[..., Awaitable[dict[str, str]]]


@dataclass
class UnderTest:
    """A service's app, its token minting, and what was seeded in the victim tenant."""

    name: str
    app: FastAPI
    mint: Mint
    #: Values for path parameters, pointing at the victim's objects.
    params: dict[str, str] = field(default_factory=dict)
    #: Strings only the victim's data contains.
    markers: tuple[str, ...] = ()

    async def bearer(
        self,
        sub: str,
        tenant: str,
        *,
        kind: str = "agent",
        roles: tuple[str, ...] = ("agent",),
        acr: str | None = None,
    ) -> dict[str, str]:
        return await self.mint(sub, tenant, kind=kind, roles=roles, acr=acr)

    def client(self) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.app)
        return httpx.AsyncClient(transport=transport, base_url=f"http://{self.name}", timeout=60)


def _issuer_mint(issuer: TestIssuer) -> Mint:
    async def mint(sub: str, tenant: str, **kwargs: Any) -> dict[str, str]:
        return issuer.bearer(sub, tenant, **kwargs)

    return mint


@asynccontextmanager
async def identity_under_test(cluster: LocalCluster, tmp: Path) -> AsyncIterator[UnderTest]:
    from identity.bootstrap import build
    from identity.settings import IdentitySettings

    settings = IdentitySettings(
        dev_mode=True,
        nats_urls=cluster.urls_for("dc1"),
        stream_replicas=3,
        key_encryption_secret="security-tests-key-secret",
        # Cheap hashing: these tests attack authorization, not password storage.
        argon2_memory_kib=1024,
        argon2_time_cost=1,
        log_level="WARNING",
    )
    built = await build(settings)
    provider = built.provider

    async def mint(
        sub: str,
        tenant: str,
        *,
        kind: str = "agent",
        roles: tuple[str, ...] = ("agent",),
        acr: str | None = None,
    ) -> dict[str, str]:
        now = int(time.time())
        claims = {
            "iss": provider.issuer,
            "sub": sub,
            "aud": ["mutualis:identity"],
            "iat": now,
            "exp": now + 300,
            "jti": uuid.uuid4().hex,
            "client_id": "security-tests",
            "scope": "openid",
            "tenant": tenant,
            "kind": kind,
            "roles": list(roles),
            "acr": acr or "urn:mutualis:loa:low",
            "amr": ["pwd"],
        }
        return {"Authorization": f"Bearer {await provider.sign(claims, typ='at+jwt')}"}

    try:
        victim = await provider.stores.users.by_username(f"agent.{VICTIM}")
        assert victim is not None
        yield UnderTest(
            "identity",
            built.app,
            mint,
            params={"tenant": VICTIM, "user_id": victim.id, "role": "signatory"},
            markers=(victim.id, f"agent.{VICTIM}"),
        )
    finally:
        await built.nc.close()


@asynccontextmanager
async def archive_under_test(cluster: LocalCluster, tmp: Path) -> AsyncIterator[UnderTest]:
    from archive.adapters.timestamper import RemoteTsa
    from archive.bootstrap import wire
    from archive.manifest import MANIFEST
    from archive.settings import ArchiveSettings
    from mutualis_kernel.runner import open_platform
    from mutualis_trust.pki import DevPki
    from mutualis_trust.tsa import DevTsa

    pki = DevPki.create(tmp / "pki")
    chain = tmp / "chain.pem"
    chain.write_bytes(pki.tsa_cert_path.read_bytes() + pki.ca_pem_path.read_bytes())
    issuer = TestIssuer()
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(issuer.running())
        tsa_url = await stack.enter_async_context(DevTsa.running(pki, state_dir=tmp / "tsa"))
        settings = ArchiveSettings(
            dev_mode=True,
            nats_urls=cluster.client_urls,
            issuer_url=issuer.issuer,
            tsa_url=tsa_url,
            tsa_ca_file=pki.ca_pem_path,
            tsa_chain_file=chain,
            work_dir=tmp,
            log_level="WARNING",
        )
        platform = await open_platform(settings, MANIFEST)
        stack.push_async_callback(platform.nc.close)
        wiring = await wire(platform, RemoteTsa(tsa_url, pki.ca_pem_path, chain))
        under = UnderTest("archive", wiring.app, _issuer_mint(issuer))
        title = f"Délibération secrète {uuid.uuid4().hex[:8]}"
        metadata = {
            "title": title,
            "originating_service": "secretariat-general",
            "document_type": "deliberation",
            "document_date": "2024-03-01",
            "retention": {
                "duration": "P10Y",
                "final_action": "destroy",
                "start_date": "2024-03-01",
            },
            "communicability_delay": "P0D",
            "keywords": ["budget"],
        }
        async with under.client() as http:
            ingested = await http.post(
                f"/v1/archive/{VICTIM}/records",
                headers=await under.bearer("producer", VICTIM, roles=("archivist",)),
                data={"metadata": json.dumps(metadata), "idempotency_key": uuid.uuid4().hex},
                files={"file": ("document.pdf", b"%PDF-1.4 victim", "application/octet-stream")},
            )
        assert ingested.status_code == 201, ingested.text
        record_id = ingested.json()["record_id"]
        under.params = {"tenant": VICTIM, "record_id": record_id, "hold_id": "h-1"}
        under.markers = (record_id, title)
        yield under


@asynccontextmanager
async def notifications_under_test(cluster: LocalCluster, tmp: Path) -> AsyncIterator[UnderTest]:
    from integration.notifications.conftest import running_service, settings_for

    from notifications.bootstrap import wiring_for

    issuer = TestIssuer()
    async with issuer.running():
        settings = settings_for(cluster, issuer_url=issuer.issuer)
        async with running_service(settings) as run:
            app = wiring_for(run.platform, run.deps, settings).app
            under = UnderTest("notifications", app, _issuer_mint(issuer))
            subject = f"Convocation confidentielle {uuid.uuid4().hex[:8]}"
            template = {
                "kind": "convocation",
                "variables": ["date"],
                "subject": subject,
                "text": "Rendez-vous le {{ date }}",
            }
            async with under.client() as http:
                saved = await http.put(
                    f"/v1/tenants/{VICTIM}/templates/convocation",
                    json=template,
                    headers=await under.bearer("adm", VICTIM, roles=("tenant-admin",)),
                )
            assert saved.status_code == 200, saved.text
            under.params = {"tenant": VICTIM, "kind": "convocation", "notification_id": "n-1"}
            under.markers = (subject,)
            yield under


@asynccontextmanager
async def parapheur_under_test(cluster: LocalCluster, tmp: Path) -> AsyncIterator[UnderTest]:
    from integration.parapheur.conftest import ARRETE, running_parapheur

    issuer = TestIssuer()
    async with issuer.running(), running_parapheur(cluster, issuer, None, tmp) as running:
        await running.circuit(ARRETE)
        title = f"Arrêté confidentiel {uuid.uuid4().hex[:8]}"
        submitted = await running.submit(running.agent("alice"), title=title)
        assert submitted.status_code == 201, submitted.text
        folder_id = submitted.json()["id"]
        under = UnderTest("parapheur", running.wiring.app, _issuer_mint(issuer))
        under.params = {
            "folder_id": folder_id,
            "circuit_id": "arrete",
            "step": "1",
            "action": "approve",
            "index": "0",
            "delegation_id": "d-1",
        }
        under.markers = (folder_id, title)
        yield under


BUILDERS = {
    "identity": identity_under_test,
    "parapheur": parapheur_under_test,
    "archive": archive_under_test,
    "notifications": notifications_under_test,
}


def under_test(name: str, cluster: LocalCluster, tmp: Path) -> Any:
    return BUILDERS[name](cluster, tmp)


__all__ = ["ATTACKER", "LOA_SUBSTANTIAL", "SERVICES", "VICTIM", "UnderTest", "under_test"]
