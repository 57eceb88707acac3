"""The parapheur's configuration (environment prefix `MUTUALIS_`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr

from mutualis_kernel.config import KernelSettings


class ParapheurSettings(KernelSettings):
    service_name: str = "parapheur"
    http_port: int = 8002
    max_document_bytes: int = Field(
        default=50 * 1024 * 1024, description="Largest main PDF or attachment accepted."
    )
    max_upload_bytes: int = Field(
        default=120 * 1024 * 1024, description="Largest multipart submission (all files)."
    )
    reminder_before_s: float = Field(
        default=24 * 3600.0, description="How long before a folder's due date to remind."
    )
    signature_location: str = Field(default="", description="Location written in signatures.")
    work_dir: Path = Field(
        default=Path(".mutualis/parapheur"),
        description="Scratch space for uploads and signing (files are deleted after use).",
    )

    # -- signing (PKCS#11 token, PKI, timestamp authority) --------------------------------
    pkcs11_module: Path | None = Field(
        default=None, description="PKCS#11 module; unset: signature steps answer 503."
    )
    pkcs11_token_label: str = "mutualis"  # noqa: S105 - a label, not a secret
    pkcs11_pin: SecretStr = Field(default=SecretStr("changeme"), description="Token user PIN.")
    softhsm2_conf: Path | None = Field(default=None, description="SoftHSM2 only.")
    pki_dir: Path = Field(
        default=Path(".mutualis/pki"), description="CA and issued certificates (dev PKI)."
    )
    tsa_url: str | None = Field(
        default="http://127.0.0.1:8318/tsa", description="RFC 3161 timestamp authority."
    )
    pades_level: Literal["B-B", "B-T", "B-LTA"] = "B-T"
    visible_stamp: bool = False
