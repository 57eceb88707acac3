"""Parapheur folders completed per second through a one-step signature circuit, against raw
pyHanko signing of the same PDF with the same HSM key, same run.

Ours: the parapheur's composition root (`parapheur.bootstrap.wire`, as the integration tests
wire it) on a real 3-DC cluster, its API driven in-process through httpx's ASGI transport.
A folder's life: POST /v1/folders (upload checks, Object Store put, `folder.submitted` and
`step.assigned` appended) -> the signatory waits for `step.assigned` to reach NATS -> POST
.../steps/0/sign with an acr=substantial token (the signature: PAdES B-T with the agent's key in
SoftHSM and an RFC 3161 timestamp from the dev TSA, new version to the Object Store) ->
`folder.completed` seen on NATS. Latency is from the submission request to that event.
`IN_FLIGHT` folders run at once; the `TrustSigner` signs them concurrently in worker threads,
sharing one PKCS#11 session (python-pkcs11 serialises `C_Sign` on it), as in production.

Raw: `mutualis_trust.pades.sign_pdf` (pyHanko) of the same PDF, in memory, with the same
agent's `PKCS11Signer` from the same token and the same TSA, one after the other, the signer
and the timestamp client made once and reused (pyHanko used well: a fresh timestamp client per
signature would cost raw signing a second TSA round trip).

Phases alternate raw/ours twice so drift in the machine's load hits both. Tokens come from
the stand-in issuer (`TestIssuer`); no tracing provider is installed (spans are no-ops).
"""

from __future__ import annotations

import asyncio
import io
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from nats.aio.client import Client as Nats
from nats.aio.msg import Msg

from bench.harness import latency_summary_ms, ratio, three_datacenters
from identity.manifest import MANIFEST as IDENTITY_MANIFEST
from mutualis_kernel.auth import LOA_SUBSTANTIAL
from mutualis_kernel.logging import configure_logging
from mutualis_kernel.runner import open_platform
from mutualis_kernel.runtime import LocalCluster
from mutualis_kernel.streams import apply_resources
from mutualis_kernel.tenants import default_tenants
from mutualis_kernel.testing.issuer import TestIssuer
from mutualis_trust.identities import SigningIdentities
from mutualis_trust.pades import http_timestamper, sign_pdf
from mutualis_trust.pkcs11 import SoftHsm, Token
from mutualis_trust.pki import DevPki
from mutualis_trust.testing import minimal_pdf, running_tsa
from parapheur.adapters.signing import TrustSigner
from parapheur.bootstrap import wire
from parapheur.manifest import MANIFEST
from parapheur.settings import ParapheurSettings

TENANT = "bordeaux"
SIGNATORY = "bob"
IN_FLIGHT = 4
CIRCUIT = {
    "id": "signature-seule",
    "name": "Signature (bench)",
    "steps": [{"kind": "signature", "actors": [{"kind": "user", "id": SIGNATORY}]}],
}


class EventWatch:
    """Core-NATS view of the parapheur's events: when (perf_counter) each (folder, type) was seen.

    Events can reach us before the submission's response names the folder, hence the memory.
    """

    def __init__(self) -> None:
        self.seen: dict[tuple[str, str], float] = {}
        self.waiters: dict[tuple[str, str], asyncio.Future[float]] = {}

    async def on_message(self, msg: Msg) -> None:
        # evt.parapheur.<tenant>.folder.<id>.<entity>.<verb>
        parts = msg.subject.split(".")
        key = (parts[4], ".".join(parts[5:]))
        now = time.perf_counter()
        self.seen.setdefault(key, now)
        waiter = self.waiters.pop(key, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(now)

    async def wait(self, folder: str, kind: str, timeout: float = 60) -> float:
        key = (folder, kind)
        if key in self.seen:
            return self.seen[key]
        waiter = self.waiters.setdefault(key, asyncio.get_running_loop().create_future())
        return await asyncio.wait_for(waiter, timeout)


class Driver:
    def __init__(self, http: httpx.AsyncClient, issuer: TestIssuer, watch: EventWatch) -> None:
        self.http = http
        self.issuer = issuer
        self.watch = watch
        #: Seconds spent in each part of a folder's life, to say where the time goes.
        self.phases: dict[str, list[float]] = {
            "submit_request": [],
            "until_step_assigned_seen": [],
            "sign_request": [],
            "until_completed_seen": [],
        }

    async def folder(self, pdf: bytes) -> float:
        started = time.perf_counter()
        submitter = self.issuer.bearer("sam", TENANT, roles=("agent",))
        metadata = {"title": "Arrêté (bench)", "circuit_id": CIRCUIT["id"]}
        submitted = await self.http.post(
            "/v1/folders",
            data={"metadata": json.dumps(metadata)},
            files=[("document", ("arrete.pdf", pdf, "application/pdf"))],
            headers=submitter,
        )
        if submitted.status_code != 201:
            raise RuntimeError(f"submit answered {submitted.status_code}: {submitted.text}")
        folder = str(submitted.json()["id"])
        answered = time.perf_counter()
        assigned = await self.watch.wait(folder, "step.assigned")
        sign_started = time.perf_counter()
        signatory = self.issuer.bearer(SIGNATORY, TENANT, roles=("agent",), acr=LOA_SUBSTANTIAL)
        signed = await self.http.post(
            f"/v1/folders/{folder}/steps/0/sign", json={"comment": "Signé."}, headers=signatory
        )
        if signed.status_code != 200 or signed.json()["status"] != "signed":
            raise RuntimeError(f"sign answered {signed.status_code}: {signed.text}")
        sign_answered = time.perf_counter()
        completed = await self.watch.wait(folder, "folder.completed")
        self.phases["submit_request"].append(answered - started)
        self.phases["until_step_assigned_seen"].append(max(0.0, assigned - answered))
        self.phases["sign_request"].append(sign_answered - sign_started)
        self.phases["until_completed_seen"].append(max(0.0, completed - sign_answered))
        return completed - started

    async def run(self, pdf: bytes, count: int) -> tuple[float, list[float]]:
        latencies: list[float] = []
        queue = iter(range(count))

        async def worker() -> None:
            for _ in queue:
                latencies.append(await self.folder(pdf))

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
        return time.perf_counter() - started, latencies


async def raw_signing(
    identities: SigningIdentities, tsa_url: str, pdf: bytes, count: int
) -> tuple[float, list[float]]:
    tenant_name = default_tenants().get(TENANT).name
    signer = identities.agent_signer(TENANT, tenant_name, SIGNATORY, SIGNATORY)
    timestamper = http_timestamper(tsa_url)
    latencies: list[float] = []
    started = time.perf_counter()
    for _ in range(count):
        one = time.perf_counter()
        out = io.BytesIO()
        await sign_pdf(
            io.BytesIO(pdf),
            out,
            signer,
            field_name=f"Signature-{uuid.uuid4().hex[:8]}",
            level="B-T",
            timestamper=timestamper,
            reason="Signé.",
            location="Bordeaux",
            trust_roots=[identities.pki.ca_pem_path],
        )
        latencies.append(time.perf_counter() - one)
    return time.perf_counter() - started, latencies


def settings_for(cluster: LocalCluster, work_dir: Path) -> ParapheurSettings:
    return ParapheurSettings(
        nats_urls=cluster.urls_for("dc1"),
        dev_mode=True,
        stream_replicas=3,
        work_dir=work_dir,
        log_level="WARNING",
    )


async def run(quick: bool = False) -> dict[str, Any]:
    per_phase = 8 if quick else 40
    configure_logging("bench", level="WARNING", fmt="json")
    pdf = minimal_pdf("Arrêté municipal (bench)", pages=2)
    with tempfile.TemporaryDirectory(prefix="bench-parapheur-") as tmp_name:
        tmp = Path(tmp_name)
        pki = DevPki.create(tmp / "pki")
        # SoftHSM reads its configuration once per process: one token for everything here.
        token_config = SoftHsm.provision(tmp / "hsm", "mutualis-bench", "1234", "12345678")
        token = Token.connect(token_config)
        identities = SigningIdentities(pki, token)
        work_dir = tmp / "work"
        work_dir.mkdir()
        try:
            with running_tsa(pki) as tsa_url:
                signer = TrustSigner(identities, default_tenants(), tsa_url=tsa_url, level="B-T")
                with three_datacenters() as cluster:
                    issuer = TestIssuer()
                    async with issuer.running():
                        figures = await measure(
                            cluster, issuer, signer, identities, tsa_url, work_dir, pdf, per_phase
                        )
        finally:
            token.close()
    figures["workload"]["pdf_bytes"] = len(pdf)
    return figures


async def measure(
    cluster: LocalCluster,
    issuer: TestIssuer,
    signer: TrustSigner,
    identities: SigningIdentities,
    tsa_url: str,
    work_dir: Path,
    pdf: bytes,
    per_phase: int,
) -> dict[str, Any]:
    platform = await open_platform(settings_for(cluster, work_dir), MANIFEST)
    await apply_resources(platform.js, IDENTITY_MANIFEST.resources, 3)
    wiring = await wire(platform, signer=signer, verifier=issuer.verifier("mutualis:parapheur"))
    stop = asyncio.Event()
    tasks = [asyncio.create_task(c.run(stop)) for c in wiring.consumers]
    tasks += [asyncio.create_task(loop(stop)) for loop in wiring.background]
    watch = EventWatch()
    nc = Nats()
    await nc.connect(servers=cluster.urls_for("dc2"))  # the watcher sits in another DC
    await nc.subscribe(f"evt.parapheur.{TENANT}.folder.>", cb=watch.on_message)
    try:
        transport = httpx.ASGITransport(app=wiring.app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://parapheur", timeout=60
        ) as http:
            admin = issuer.bearer("admin", TENANT, roles=("agent", "tenant-admin"))
            created = await http.put(f"/v1/circuits/{CIRCUIT['id']}", json=CIRCUIT, headers=admin)
            if created.status_code != 200:
                raise RuntimeError(f"circuit answered {created.status_code}: {created.text}")
            driver = Driver(http, issuer, watch)
            # Warm both paths: bob's key and certificate are made on his first signature.
            await driver.run(pdf, IN_FLIGHT)
            await raw_signing(identities, tsa_url, pdf, 4)

            for samples in driver.phases.values():
                samples.clear()
            raw_s, ours_s = 0.0, 0.0
            # CPU of this process (every thread), to tell where a gap comes from; the
            # nats-servers and the TSA are other processes.
            raw_cpu, ours_cpu = 0.0, 0.0
            raw_lat: list[float] = []
            ours_lat: list[float] = []
            for _ in range(2):
                cpu = time.process_time()
                elapsed, lat = await raw_signing(identities, tsa_url, pdf, per_phase)
                raw_s, raw_lat = raw_s + elapsed, raw_lat + lat
                raw_cpu += time.process_time() - cpu
                cpu = time.process_time()
                elapsed, lat = await driver.run(pdf, per_phase)
                ours_s, ours_lat = ours_s + elapsed, ours_lat + lat
                ours_cpu += time.process_time() - cpu
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 20)
        for hook in wiring.on_stop:
            await hook()
        await nc.close()
        await platform.nc.drain()

    count = 2 * per_phase
    raw_rate = count / raw_s
    ours_rate = count / ours_s
    return {
        "workload": {
            "folders": count,
            "raw_signatures": count,
            "in_flight": IN_FLIGHT,
            "circuit": "one signature step by a named agent (acr substantial)",
            "pades": "B-T, agent key in SoftHSM, RFC 3161 timestamp from the dev TSA",
            "cluster": "PARAPHEUR_EVENTS and the documents object store, R3, 3 nats-server",
        },
        "folders_completed_per_s": {
            "raw_signing": round(raw_rate, 2),
            "parapheur": round(ours_rate, 2),
            "ratio": ratio(ours_rate, raw_rate),
            "target": 0.6,
        },
        "bench_process_cpu_ms_per_folder": {
            "raw_signing": round(raw_cpu / count * 1000, 1),
            "parapheur": round(ours_cpu / count * 1000, 1),
        },
        "latency": {
            "raw_signing": latency_summary_ms(raw_lat),
            "parapheur_submit_to_completed": latency_summary_ms(ours_lat),
            # Negative "until seen" gaps (event before the HTTP answer) count as 0.
            "parapheur_phases_mean_ms": {
                name: round(statistics.fmean(samples) * 1000, 1)
                for name, samples in driver.phases.items()
            },
        },
    }
