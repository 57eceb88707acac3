"""The archive service's configuration (environment prefix `MUTUALIS_`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from mutualis_kernel.config import KernelSettings


class ArchiveSettings(KernelSettings):
    service_name: str = "archive"
    http_port: int = 8003
    tsa_url: str = Field(
        default="http://127.0.0.1:8318/tsa", description="RFC 3161 TSA sealing the journal."
    )
    tsa_ca_file: Path = Field(
        default=Path(".mutualis/pki/ca.pem"),
        description="Trusted root(s) of the TSA, used to verify seals.",
    )
    tsa_chain_file: Path | None = Field(
        default=None,
        description="PEM chain exported with seals (TSA cert + CA); default: tsa_ca_file.",
    )
    max_upload_bytes: int = Field(default=2 * 1024**3, description="Largest ingest request.")
    seal_interval_s: float = Field(default=3600.0, gt=0)
    fixity_rate_bytes_s: int = Field(
        default=32 * 1024 * 1024, gt=0, description="Bound on the background audit's read rate."
    )
    fixity_cycle_s: float = Field(default=24 * 3600.0, gt=0, description="Pause between audits.")
    work_dir: Path | None = Field(default=None, description="Temp files of uploads (None: system).")
    seda_xsd_dir: Path | None = Field(
        default=None,
        description=(
            "The official SEDA 2.2 XSDs, installed at setup (`make seda-schemas`); "
            "default: <venv>/share/mutualis/seda."
        ),
    )
