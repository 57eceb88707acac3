"""A real signature feeds the alerts: its timestamp requests are counted (TsaUnreachable) and
the certificates it used report their end of validity (SigningCertificateExpiringSoon)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from mutualis_kernel import metrics as names
from mutualis_kernel.metrics import DomainMetrics
from mutualis_kernel.tenants import default_tenants
from mutualis_trust.identities import SigningIdentities
from mutualis_trust.pkcs11 import Token
from mutualis_trust.pki import agent_cert_name, seal_cert_name
from mutualis_trust.testing import TrustEnv, minimal_pdf
from parapheur.adapters.signing import SigningFailed, TrustSigner
from parapheur.bootstrap import trust_signer
from parapheur.service_layer.ports import SignatureRequest
from parapheur.settings import ParapheurSettings

Points = dict[tuple[str, frozenset[tuple[str, object]]], float]


@pytest.fixture
def reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture
def metrics(reader: InMemoryMetricReader) -> DomainMetrics:
    # A meter of its own: the process-wide DomainMetrics keeps the first gauge callback.
    return DomainMetrics(MeterProvider(metric_readers=[reader]).get_meter("test"))


@pytest.fixture
def token(trust_env: TrustEnv) -> Iterator[Token]:
    opened = Token.connect(trust_env.token)
    try:
        yield opened
    finally:
        opened.close()


def points(reader: InMemoryMetricReader) -> Points:
    """Every data point as (instrument name, attributes) -> value."""
    found: Points = {}
    data = reader.get_metrics_data()
    assert data is not None
    for resource_metrics in data.resource_metrics:
        for scope in resource_metrics.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    key = (metric.name, frozenset((point.attributes or {}).items()))
                    found[key] = point.value  # type: ignore[union-attr]
    return found


def key(name: str, **attributes: object) -> tuple[str, frozenset[tuple[str, object]]]:
    return name, frozenset(attributes.items())


def request(kind: str, signer: str) -> SignatureRequest:
    return SignatureRequest(
        tenant="bordeaux",
        folder_id="folder-metrics",
        title="Arrêté",
        step=0,
        kind="seal" if kind == "seal" else "signature",
        signer=signer,
        on_behalf_of=None,
        reason="Signé.",
        location="Bordeaux",
        field_name=f"Sig1-Step1-{kind}",
    )


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_a_signature_counts_its_timestamps_and_reports_its_certificates(
    trust_env: TrustEnv,
    token: Token,
    metrics: DomainMetrics,
    reader: InMemoryMetricReader,
    tmp_path: Path,
) -> None:
    signer = TrustSigner(
        SigningIdentities(trust_env.pki, token, metrics),
        default_tenants(),
        tsa_url=trust_env.tsa_url,
        metrics=metrics,
    )
    source = tmp_path / "in.pdf"
    source.write_bytes(minimal_pdf())
    await signer.sign(request("seal", "bordeaux"), source, tmp_path / "sealed.pdf")
    await signer.sign(request("signature", "metrics-ann"), source, tmp_path / "signed.pdf")

    found = points(reader)
    tsa = {"server.address": "127.0.0.1", "outcome": "ok"}
    # pyHanko's size estimate once, then one timestamp per signature.
    assert found[key(names.TIMESTAMP_REQUESTS, **tsa)] == 3
    assert key(names.TIMESTAMP_REQUESTS, **{**tsa, "outcome": "failed"}) not in found
    seal = trust_env.pki.certificate(seal_cert_name("bordeaux"))
    agent = trust_env.pki.certificate(agent_cert_name("bordeaux", "metrics-ann"))
    assert seal is not None
    assert agent is not None
    tenant = {"mutualis.tenant": "bordeaux"}
    assert found[
        key(names.CERTIFICATE_NOT_AFTER, certificate=seal_cert_name("bordeaux"), **tenant)
    ] == pytest.approx(seal.not_valid_after_utc.timestamp())
    # Agents are one series per tenant (never one per person): the earliest expiry.
    assert found[key(names.CERTIFICATE_NOT_AFTER, certificate="agents", **tenant)] == (
        pytest.approx(agent.not_valid_after_utc.timestamp())
    )
    assert found[key(names.SIGNATURES_APPLIED, **tenant, **{"signature.level": "seal"})] == 1


async def test_an_unreachable_tsa_is_counted_as_failed_requests(
    trust_env: TrustEnv,
    token: Token,
    metrics: DomainMetrics,
    reader: InMemoryMetricReader,
    tmp_path: Path,
) -> None:
    signer = TrustSigner(
        SigningIdentities(trust_env.pki, token, metrics),
        default_tenants(),
        tsa_url=f"http://127.0.0.1:{closed_port()}/tsa",
        metrics=metrics,
    )
    source = tmp_path / "in.pdf"
    source.write_bytes(minimal_pdf())
    with pytest.raises(SigningFailed, match="unreachable"):
        await signer.sign(request("seal", "bordeaux"), source, tmp_path / "out.pdf")
    found = points(reader)
    failed = key(names.TIMESTAMP_REQUESTS, **{"server.address": "127.0.0.1", "outcome": "failed"})
    assert found[failed] >= 1
    assert key(names.SIGNATURES_APPLIED, **{"mutualis.tenant": "bordeaux"}) not in found


def test_the_parapheur_reports_every_issued_seal_when_it_starts(
    trust_env: TrustEnv, metrics: DomainMetrics, reader: InMemoryMetricReader, tmp_path: Path
) -> None:
    # One logged-in session per process at a time: the service opens its own below.
    with Token.open(trust_env.token) as token:
        SigningIdentities(trust_env.pki, token).seal_certificate("pessac", "Pessac")
    settings = ParapheurSettings(
        dev_mode=True,
        pkcs11_module=trust_env.token.module_path,
        pkcs11_token_label=trust_env.token.token_label,
        pkcs11_pin=trust_env.token.user_pin,
        softhsm2_conf=trust_env.token.softhsm2_conf,
        pki_dir=trust_env.pki.dir,
        tsa_url=trust_env.tsa_url,
        work_dir=tmp_path,
    )
    signer, close = trust_signer(settings, metrics)
    try:
        assert signer is not None
        found = points(reader)
        expected = key(
            names.CERTIFICATE_NOT_AFTER,
            certificate=seal_cert_name("pessac"),
            **{"mutualis.tenant": "pessac"},
        )
        assert expected in found  # before any seal of this process
    finally:
        close()
