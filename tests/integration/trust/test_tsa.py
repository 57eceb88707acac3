"""The development TSA answers RFC 3161 over HTTP, and `openssl ts -verify` checks its tokens."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import socket
from pathlib import Path

import httpx
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from mutualis_kernel.metrics import TIMESTAMP_REQUESTS, DomainMetrics
from mutualis_trust.pki import DevPki
from mutualis_trust.testing import TrustEnv
from mutualis_trust.tsa import (
    DevTsa,
    TimestampError,
    TimestampToken,
    TimestampVerificationError,
    build_query,
    timestamp,
    verify_timestamp,
    write_tsa_config,
)

QUERY = {"Content-Type": "application/timestamp-query"}


async def test_a_token_verifies_with_openssl_against_the_dev_ca(trust_env: TrustEnv) -> None:
    data = b"journal merkle root"
    token = await timestamp(trust_env.tsa_url, data)
    assert token.hashed_message == hashlib.sha256(data).digest()
    assert token.gen_time.tzinfo is not None
    await asyncio.to_thread(verify_timestamp, token, data, trust_env.pki.ca_pem_path)


async def test_every_timestamp_request_is_counted_granted_or_failed(
    trust_env: TrustEnv,
) -> None:
    reader = InMemoryMetricReader()
    metrics = DomainMetrics(MeterProvider(metric_readers=[reader]).get_meter("test"))
    await timestamp(trust_env.tsa_url, b"journal seal", metrics=metrics)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with pytest.raises(TimestampError, match="unreachable"):
        await timestamp(f"http://127.0.0.1:{port}/tsa", b"journal seal", metrics=metrics)
    data = reader.get_metrics_data()
    assert data is not None
    counted = {
        dict(point.attributes or {})["outcome"]: point.value  # type: ignore[union-attr]
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == TIMESTAMP_REQUESTS
        for point in metric.data.data_points
        if (point.attributes or {}).get("server.address") == "127.0.0.1"
    }
    assert counted == {"ok": 1, "failed": 1}


async def test_tampered_data_fails_verification(trust_env: TrustEnv) -> None:
    token = await timestamp(trust_env.tsa_url, b"original")
    with pytest.raises(TimestampVerificationError, match="imprint"):
        verify_timestamp(token, b"tampered", trust_env.pki.ca_pem_path)


async def test_a_token_from_another_ca_is_not_trusted(trust_env: TrustEnv, tmp_path: Path) -> None:
    other = DevPki.create(tmp_path / "other")
    token = await timestamp(trust_env.tsa_url, b"data")
    with pytest.raises(TimestampVerificationError):
        verify_timestamp(token, b"data", other.ca_pem_path)


async def test_a_digest_can_be_timestamped_and_verified_without_the_data(
    trust_env: TrustEnv,
) -> None:
    digest = hashlib.sha512(b"big file").digest()
    token = await timestamp(trust_env.tsa_url, digest, is_digest=True, hash_algorithm="sha512")
    verify_timestamp(token, digest, trust_env.pki.ca_pem_path, is_digest=True)
    assert TimestampToken.from_response(token.response_der) == token


async def test_concurrent_requests_get_distinct_serials(trust_env: TrustEnv) -> None:
    async with httpx.AsyncClient() as client:
        tokens = await asyncio.gather(
            *(timestamp(trust_env.tsa_url, b"%d" % i, client=client) for i in range(12))
        )
    assert len({t.serial for t in tokens}) == 12


async def test_the_in_process_tsa_refuses_what_is_not_a_timestamp_query(
    trust_env: TrustEnv, tmp_path: Path
) -> None:
    async with DevTsa.running(trust_env.pki, state_dir=tmp_path / "tsa") as url:
        async with httpx.AsyncClient() as client:
            wrong_type = await client.post(
                url, content=b"x", headers={"Content-Type": "text/plain"}
            )
            garbage = await client.post(
                url,
                content=b"\x30\x03\x02\x01",
                headers={"Content-Type": "application/timestamp-query"},
            )
        token = await timestamp(url, b"in-process")
    assert wrong_type.status_code == 415
    assert garbage.status_code == 400
    verify_timestamp(token, b"in-process", trust_env.pki.ca_pem_path)


async def _granted_replies(urls: list[str], per_url: int) -> list[TimestampToken]:
    """Raw replies (no client retry) to concurrent queries spread over `urls`, each parsed:
    a refusal raises `TimestampError` with the TSA's reason."""
    async with httpx.AsyncClient(timeout=60) as client:

        async def ask(url: str, index: int) -> TimestampToken:
            query = build_query(hashlib.sha256(f"{url}-{index}".encode()).digest())
            reply = await client.post(url, content=query, headers=QUERY)
            assert reply.status_code == 200, reply.text
            return TimestampToken.from_response(reply.content)

        return list(await asyncio.gather(*(ask(url, i) for url in urls for i in range(per_url))))


def _refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    # What the in-process TSAs logged about their own replies: a refusal retried away (as the
    # TSA once did) is still a refusal.
    return [r.getMessage() for r in caplog.records if r.name == "mutualis_trust.tsa"]


async def test_two_dev_tsas_on_one_pki_grant_every_concurrent_request(
    trust_env: TrustEnv, caplog: pytest.LogCaptureFixture
) -> None:
    # The CI flake: two TSAs sharing one serial file refused some requests, which then read
    # as "Field time_stamp_token is missing".
    caplog.set_level(logging.WARNING, logger="mutualis_trust.tsa")
    async with DevTsa.running(trust_env.pki) as first, DevTsa.running(trust_env.pki) as second:
        tokens = await _granted_replies([first, second, trust_env.tsa_url], 16)
    assert len({t.serial for t in tokens}) == len(tokens) == 48
    assert _refusals(caplog) == []


async def test_two_dev_tsas_given_one_state_dir_take_turns(
    trust_env: TrustEnv, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="mutualis_trust.tsa")
    shared = tmp_path / "tsa"
    async with (
        DevTsa.running(trust_env.pki, state_dir=shared) as first,
        DevTsa.running(trust_env.pki, state_dir=shared) as second,
    ):
        tokens = await _granted_replies([first, second], 24)
    assert len({t.serial for t in tokens}) == len(tokens) == 48
    assert _refusals(caplog) == []


async def test_an_in_process_tsa_leaves_no_state_behind(trust_env: TrustEnv) -> None:
    before = set((trust_env.pki.dir / "tsa").iterdir())
    async with DevTsa.running(trust_env.pki) as url:
        await timestamp(url, b"passing through")
    assert set((trust_env.pki.dir / "tsa").iterdir()) == before


async def test_a_fresh_tsa_grants_its_first_request_whatever_its_serial_start(
    trust_env: TrustEnv, tmp_path: Path
) -> None:
    # The other cause of the flake: a random start written with an odd number of hex digits
    # (one start in 16), which openssl cannot read, so it refused the first request.
    for start in (0xABC, 0xFFFFFFFFFFF, 0x0123456789AB):
        state_dir = tmp_path / f"{start:x}"
        write_tsa_config(trust_env.pki, state_dir, last_serial=start)
        reply = await DevTsa(trust_env.pki, state_dir=state_dir).reply(
            build_query(hashlib.sha256(b"first").digest())
        )
        assert TimestampToken.from_response(reply).serial == start + 1
        assert len((state_dir / "serial").read_text().strip()) % 2 == 0
