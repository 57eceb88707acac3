"""How the locally started services find each other: the settings they share.

In a deployment these come from Helm values; here `mutualis up` derives them from the ports it
chose, so identity's issuer URL, the timestamp authority, the signing token and the mail sinks
line up. It also prepares the development trust anchors once per run directory: a dev PKI, a
SoftHSM token (when SoftHSM is installed) and an RFC 3161 timestamp authority process.
"""

from __future__ import annotations

import importlib.util
import multiprocessing
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from mutualis_cli.supervisor import ServiceLaunch

if TYPE_CHECKING:
    from mutualis_cli.platform import UpOptions
    from mutualis_trust.pkcs11 import TokenConfig

#: Development-only secrets: the kernel refuses such values outside dev mode.
DEV_KEY_ENCRYPTION_SECRET = "dev-only-identity-key-encryption"  # noqa: S105 - dev mode only
DEV_TOKEN_LABEL = "mutualis"  # noqa: S105 - a label, not a secret
DEV_TOKEN_PIN = "dev-only-1234"  # noqa: S105 - a SoftHSM token made for this run dir
DEV_TOKEN_SO_PIN = "dev-only-so-5678"  # noqa: S105
#: Offsets from --port-base-services (8001): the TSA lands on 8318, the mail and SMS sinks
#: on 8025 and 8026 by default (the notifications service's own defaults).
TSA_PORT_OFFSET = 317
SMTP_SINK_PORT_OFFSET = 24
SMS_SINK_PORT_OFFSET = 25

console = Console(stderr=True, highlight=False)


def trust_available() -> bool:
    return importlib.util.find_spec("mutualis_trust") is not None and bool(shutil.which("openssl"))


def trust_launches(options: UpOptions, run_dir: Path) -> tuple[list[ServiceLaunch], dict[str, str]]:
    """The dev TSA process and the settings pointing signers and sealers at the trust anchors."""
    if not trust_available():
        return [], {}
    env = prepare_trust(run_dir)
    pki_dir = Path(env["MUTUALIS_PKI_DIR"])
    port = options.port_base_services + TSA_PORT_OFFSET
    tsa = ServiceLaunch(
        name="tsa",
        datacenter="dc1",
        port=port,
        nats_urls=[],
        replicas=0,
        log_path=run_dir / "logs" / "tsa@dc1.log",
        data_dir=run_dir / "services" / "tsa@dc1",
        module="mutualis_trust.tsa",
        args=("--dir", str(pki_dir), "--port", str(port)),
        ready_path="/healthz",
    )
    env["MUTUALIS_TSA_URL"] = f"{tsa.url}/tsa"
    return [tsa], env


def prepare_trust(run_dir: Path) -> dict[str, str]:
    """`mutualis pki init`: the dev PKI and, when SoftHSM is installed, a token whose keys are
    generated inside it (on first signature). Idempotent; returns the settings to use them."""
    from mutualis_trust.pkcs11 import SoftHsm, softhsm_available
    from mutualis_trust.pki import DevPki

    pki_dir = run_dir / "pki"
    pki = DevPki.load_or_create(pki_dir)
    # The chain a seal keeps with its token: the dev TSA's certificate, then the CA's, so an
    # exported seal carries everything `openssl ts -verify -untrusted` may need.
    chain = pki_dir / "tsa-chain.pem"
    chain.write_bytes(pki.tsa_cert_path.read_bytes() + pki.ca_pem_path.read_bytes())
    env = {
        "MUTUALIS_PKI_DIR": str(pki_dir),
        "MUTUALIS_TSA_CA_FILE": str(pki.ca_pem_path),
        "MUTUALIS_TSA_CHAIN_FILE": str(chain),
    }
    if softhsm_available():
        token = SoftHsm.provision(run_dir / "hsm", DEV_TOKEN_LABEL, DEV_TOKEN_PIN, DEV_TOKEN_SO_PIN)
        _provision_seals_apart(pki_dir, token)
        env.update(
            {
                "MUTUALIS_PKCS11_MODULE": str(token.module_path),
                "MUTUALIS_PKCS11_TOKEN_LABEL": token.token_label,
                "MUTUALIS_PKCS11_PIN": DEV_TOKEN_PIN,
                "MUTUALIS_SOFTHSM2_CONF": str(token.softhsm2_conf or ""),
            }
        )
    else:
        console.print(
            "[yellow]![/] SoftHSM is not installed: signatures use the dev-mode software "
            "fallback (install softhsm2, or run `make up` as root)"
        )
    return env


def _provision_seals(pki_dir: Path, token: TokenConfig) -> None:
    from mutualis_kernel.tenants import default_tenants
    from mutualis_trust.identities import provision_seals
    from mutualis_trust.pki import DevPki

    tenants = [(t.slug, t.name) for t in default_tenants().tenants]
    provision_seals(DevPki.load_or_create(pki_dir), token, tenants)


def _provision_seals_apart(pki_dir: Path, token: TokenConfig) -> None:
    """Every tenant's seal (key made in the token, certificate from the dev CA), where missing.

    In a child process: SoftHSM keeps one configuration per process and leaves an OpenSSL
    error in the thread that opens it, which this process's own TLS connection to NATS would
    then meet (docs/trust.md)."""
    child = multiprocessing.get_context("spawn").Process(
        target=_provision_seals, args=(pki_dir, token), name="provision-seals"
    )
    child.start()
    child.join()
    if child.exitcode != 0:
        raise RuntimeError(f"provisioning the tenants' seals failed (exit code {child.exitcode})")


def sink_launches(options: UpOptions, run_dir: Path) -> tuple[list[ServiceLaunch], dict[str, str]]:
    """The dev mail and SMS sinks that stand in for the relays, when notifications exists."""
    if importlib.util.find_spec("notifications") is None:
        return [], {}
    smtp_port = options.port_base_services + SMTP_SINK_PORT_OFFSET
    sms_port = options.port_base_services + SMS_SINK_PORT_OFFSET
    sinks = ServiceLaunch(
        name="sinks",
        datacenter="dc1",
        port=sms_port,
        nats_urls=[],
        replicas=0,
        log_path=run_dir / "logs" / "sinks@dc1.log",
        data_dir=run_dir / "services" / "sinks@dc1",
        module="notifications.devsinks",
        args=(
            "--dir",
            str(sinks_dir(run_dir)),
            "--smtp-port",
            str(smtp_port),
            "--sms-port",
            str(sms_port),
        ),
        ready_path="/healthz",
    )
    env = {
        "MUTUALIS_SMTP_HOST": "127.0.0.1",
        "MUTUALIS_SMTP_PORT": str(smtp_port),
        "MUTUALIS_SMS_GATEWAY_URL": f"{sinks.url}/sms",
    }
    return [sinks], env


def sinks_dir(run_dir: Path) -> Path:
    """Where the dev sinks keep what was "sent" (read by `mutualis mail`)."""
    return run_dir / "sinks"


def shared_environment(launches: Sequence[ServiceLaunch]) -> dict[str, str]:
    env: dict[str, str] = {}
    identity = next((launch for launch in launches if launch.name == "identity"), None)
    if identity is not None:
        # Every identity instance signs as the same issuer: in --ha the first datacenter's
        # address stands for the load balancer a deployment puts in front of them.
        env["MUTUALIS_ISSUER"] = identity.url
        env["MUTUALIS_ISSUER_URL"] = identity.url
        env["MUTUALIS_KEY_ENCRYPTION_SECRET"] = DEV_KEY_ENCRYPTION_SECRET
    return env


def with_shared_environment(
    launches: Sequence[ServiceLaunch], shared: Mapping[str, str]
) -> list[ServiceLaunch]:
    """Every service with the shared settings and a work directory of its own."""
    env = {**shared, **shared_environment(launches)}
    return [
        replace(
            launch,
            shared_env={
                **env,
                "MUTUALIS_WORK_DIR": str(launch.data_dir / "work"),
                **launch.shared_env,
            },
        )
        for launch in launches
    ]
