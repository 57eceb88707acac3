"""Archive ingest and fixity audit throughput against raw Object Store puts and raw hashlib.

Ingest: the path the API's `POST /v1/archive/{tenant}/records` takes once the multipart body is
parsed (the HTTP layer is left out so that 50 MiB bodies are not built in memory by the client):
`stage` (copy to a temp file, SHA-256 + SHA-512 + format identification on the way, in a thread),
then `ArchiveService.ingest` (declared-hash check, Object Store `put` from the staged file into
the R3 `archive_content` bucket, `record.ingested` appended with optimistic concurrency, search
projection, hash-chained journal entry). Raw baseline: nats-py `object_store.put` of the same
file into the same bucket. Ingest never timestamps (only sealing does), so no TSA runs here.

Ingest stores objects in 1 MiB chunks (`PUT_CHUNK`); the raw baseline is nats-py's `put` as
anyone would call it (128 KiB chunks). A like-for-like reference, a raw `put` with 1 MiB chunks,
is reported too: the gap to it is the archive's own per-record work.

Fixity: `archive.adapters.content.sha256_digest`, what the routine audit runs (pull-consumer
reads of the object's chunks, SHA-256 in a thread overlapped with the next fetch), against raw
`hashlib.sha256` over the same bytes read from a file, which is the issue's target. References:
`fixity_digest` (SHA-256 + SHA-512, what `verify` runs), SHA-256 + SHA-512 over the file, and
the object stream read without hashing (the NATS side alone).

Files are written to a temp dir in 1 MiB pieces; repetitions alternate raw and ours so drift
in the machine's load hits both; medians are reported. Sizes in MiB, rates in MiB/s.
"""

from __future__ import annotations

import hashlib
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

from nats.js.api import ObjectMeta, ObjectMetaOptions

from archive.adapters.content import (
    CHUNK,
    PUT_CHUNK,
    fixity_digest,
    iter_object,
    sha256_digest,
    stage,
)
from archive.adapters.timestamper import RemoteTsa
from archive.bootstrap import build_service
from archive.domain.commands import Actor, Ingest
from archive.domain.model import RecordMetadata, RetentionRule
from archive.manifest import CONTENT, MANIFEST
from archive.service_layer.handlers import ArchiveService
from archive.settings import ArchiveSettings
from bench.harness import cpu_seconds, ratio, three_datacenters
from mutualis_kernel.logging import configure_logging
from mutualis_kernel.runner import open_platform

MIB = 1024 * 1024
TENANT = "bordeaux"
AGENT = Actor("bench-agent", frozenset({"agent"}))


def write_file(path: Path, size: int) -> Path:
    with path.open("wb") as out:
        left = size
        while left:
            piece = min(CHUNK, left)
            out.write(os.urandom(piece))
            left -= piece
    return path


def metadata() -> RecordMetadata:
    today = date.today()
    return RecordMetadata(
        title="Délibération du conseil municipal (bench)",
        originating_service="secretariat-general",
        document_type="deliberation",
        document_date=today,
        retention=RetentionRule(duration="P10Y", final_action="destroy", start_date=today),
        communicability_delay="P0D",
        keywords=("bench",),
    )


async def timed(action: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    started = time.perf_counter()
    value = await action()
    return time.perf_counter() - started, value


async def ingest_once(service: ArchiveService, path: Path, work_dir: Path) -> str:
    with path.open("rb") as source:
        staged = await stage(source, work_dir)
    try:
        record, created = await service.ingest(
            Ingest(
                tenant=TENANT,
                metadata=metadata(),
                filename=path.name,
                source="api",
                cause=uuid.uuid4().hex,
                by=AGENT,
            ),
            staged,
        )
    finally:
        staged.discard()
    assert created
    return record.content.object_name


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_sha512_file(path: Path) -> None:
    first, second = hashlib.sha256(), hashlib.sha512()
    with path.open("rb") as source:
        while chunk := source.read(CHUNK):
            first.update(chunk)
            second.update(chunk)


class CpuUse:
    """CPU seconds spent during the audits: the three nats-servers' and this process's (its
    hashing threads included), from which the audit rate two cores could reach at best."""

    def __init__(self) -> None:
        self.servers_s = 0.0
        self.client_s = 0.0

    @contextmanager
    def counting(self, server_pids: list[int]) -> Iterator[None]:
        servers, client = sum(map(cpu_seconds, server_pids)), time.process_time()
        yield
        self.client_s += time.process_time() - client
        self.servers_s += sum(map(cpu_seconds, server_pids)) - servers

    def budget(self, audited_bytes: int, raw_sha256_mib_s: float) -> dict[str, Any]:
        mib = audited_bytes / MIB
        servers_ms, client_ms = self.servers_s / mib * 1000, self.client_s / mib * 1000
        cores = len(os.sched_getaffinity(0))
        # Every part overlapped perfectly, nothing else running: the most the cores allow.
        ceiling = cores * 1000 / (servers_ms + client_ms) if servers_ms + client_ms else 0.0
        return {
            "servers_ms_per_mib": round(servers_ms, 3),
            "client_ms_per_mib_hashing_included": round(client_ms, 3),
            "cores": cores,
            "ceiling_mib_s": round(ceiling, 1),
            "ceiling_ratio_to_raw_sha256": ratio(ceiling, raw_sha256_mib_s),
            "note": "CPU from /proc in clock ticks (10 ms): coarse for the 1 MiB runs",
        }


def mib_s(size: int, seconds: list[float]) -> float:
    return round(size / MIB / statistics.median(seconds), 1)


async def run(quick: bool = False) -> dict[str, Any]:
    configure_logging("bench", level="WARNING", fmt="json")
    plan = {1 * MIB: 4 if quick else 15, 50 * MIB: 2 if quick else 5}
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-archive-") as tmp_name:
        tmp = Path(tmp_name)
        work_dir = tmp / "work"
        work_dir.mkdir()
        with three_datacenters() as cluster:
            settings = ArchiveSettings(
                dev_mode=True,
                nats_urls=cluster.client_urls,
                work_dir=work_dir,
                log_level="WARNING",
            )
            platform = await open_platform(settings, MANIFEST)
            service = build_service(
                platform, settings, RemoteTsa("http://127.0.0.1:9/unused", tmp / "none.pem")
            )
            store = await platform.js.object_store(CONTENT)
            # Warm both paths: bucket lookups, inbox subscriptions, the journal's first entry.
            warm = write_file(tmp / "warm.bin", 256 * 1024)
            with warm.open("rb") as source:
                await store.put(f"raw/warm/{uuid.uuid4().hex}", source)
            await ingest_once(service, warm, work_dir)

            servers = [node.pid for node in cluster.nodes.values() if node.pid is not None]
            ingest: dict[str, Any] = {}
            fixity: dict[str, Any] = {}
            for size, reps in plan.items():
                label = f"{size // MIB}MiB"
                path = write_file(tmp / f"{label}.bin", size)
                raw_s: list[float] = []
                raw_big_s: list[float] = []
                ours_s: list[float] = []
                names: list[str] = []
                for _ in range(reps):
                    with path.open("rb") as source:
                        name = f"raw/{label}/{uuid.uuid4().hex}"
                        elapsed, _ = await timed(lambda: store.put(name, source))  # noqa: B023
                    raw_s.append(elapsed)
                    with path.open("rb") as source:
                        name = f"raw1m/{label}/{uuid.uuid4().hex}"
                        meta = ObjectMeta(
                            name=name, options=ObjectMetaOptions(max_chunk_size=PUT_CHUNK)
                        )
                        elapsed, _ = await timed(lambda: store.put(name, source, meta=meta))  # noqa: B023
                    raw_big_s.append(elapsed)
                    elapsed, object_name = await timed(
                        lambda: ingest_once(service, path, work_dir)  # noqa: B023
                    )
                    ours_s.append(elapsed)
                    names.append(object_name)
                ingest[label] = {
                    "repetitions": reps,
                    "raw_object_store_put_mib_s": mib_s(size, raw_s),
                    "archive_ingest_mib_s": mib_s(size, ours_s),
                    "ratio": ratio(statistics.median(raw_s), statistics.median(ours_s)),
                    "target": 0.8,
                    "reference_raw_put_1mib_chunks_mib_s": mib_s(size, raw_big_s),
                    "ratio_to_raw_put_1mib_chunks": ratio(
                        statistics.median(raw_big_s), statistics.median(ours_s)
                    ),
                }

                expected = sha256_file(path)
                hash_s: list[float] = []
                both_s: list[float] = []
                read_s: list[float] = []
                audit_s: list[float] = []
                full_s: list[float] = []
                audit_cpu = CpuUse()
                for n in range(reps):
                    started = time.perf_counter()
                    assert sha256_file(path) == expected
                    hash_s.append(time.perf_counter() - started)
                    started = time.perf_counter()
                    sha256_sha512_file(path)
                    both_s.append(time.perf_counter() - started)
                    started = time.perf_counter()
                    async for _chunk in iter_object(platform.js, CONTENT, names[n]):
                        pass
                    read_s.append(time.perf_counter() - started)
                    with audit_cpu.counting(servers):
                        elapsed, digest = await timed(
                            lambda: sha256_digest(platform.js, CONTENT, names[n])  # noqa: B023
                        )
                    assert digest.sha256 == expected
                    audit_s.append(elapsed)
                    elapsed, result = await timed(
                        lambda: fixity_digest(platform.js, CONTENT, names[n])  # noqa: B023
                    )
                    assert result.sha256 == expected
                    full_s.append(elapsed)
                fixity[label] = {
                    "repetitions": reps,
                    "raw_sha256_file_mib_s": mib_s(size, hash_s),
                    "audit_sha256_digest_mib_s": mib_s(size, audit_s),
                    "ratio": ratio(statistics.median(hash_s), statistics.median(audit_s)),
                    "target": 0.8,
                    "reference_verify_fixity_digest_sha256_sha512_mib_s": mib_s(size, full_s),
                    "reference_sha256_plus_sha512_file_mib_s": mib_s(size, both_s),
                    "ratio_verify_to_sha256_plus_sha512": ratio(
                        statistics.median(both_s), statistics.median(full_s)
                    ),
                    "reference_object_stream_read_only_mib_s": mib_s(size, read_s),
                    "audit_cpu_budget": audit_cpu.budget(size * reps, mib_s(size, hash_s)),
                }
                path.unlink()
            await platform.nc.close()
    figures["workload"] = {
        "files": "random bytes (incompressible), 1 MiB and 50 MiB, read from a temp file",
        "bucket": f"{CONTENT}, Object Store R3, one replica per datacenter",
        "ingest": "stage (copy + SHA-256 + SHA-512 + format) then ArchiveService.ingest "
        "(objects in 1 MiB chunks); raw: nats-py put, default 128 KiB chunks",
        "fixity": "audit = sha256_digest (SHA-256 + size); verify = fixity_digest (+ SHA-512)",
        "units": "MiB/s, median of the repetitions; raw and ours alternate",
    }
    figures["ingest"] = ingest
    figures["fixity"] = fixity
    return figures
