"""`mutualis pki init`: the dev PKI, the SoftHSM token, and every tenant's seal made inside it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mutualis_kernel.tenants import default_tenants
from mutualis_trust.pkcs11 import SOFTHSM_MISSING, softhsm_available
from mutualis_trust.pki import DevPki, seal_cert_name


def pki_init(run_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mutualis_cli.main", "pki", "init", "--run-dir", str(run_dir)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_pki_init_issues_a_seal_for_every_tenant_once(tmp_path: Path) -> None:
    if not softhsm_available():
        pytest.skip(SOFTHSM_MISSING)
    first = pki_init(tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "MUTUALIS_PKCS11_PIN=(hidden)" in first.stdout  # the PIN is never printed
    pki = DevPki.load_or_create(tmp_path / "pki")
    seals = {t.slug: pki.certificate(seal_cert_name(t.slug)) for t in default_tenants().tenants}
    assert all(cert is not None for cert in seals.values()), sorted(
        slug for slug, cert in seals.items() if cert is None
    )

    again = pki_init(tmp_path)  # idempotent: the same certificates, not new ones
    assert again.returncode == 0, again.stdout + again.stderr
    kept = {t.slug: pki.certificate(seal_cert_name(t.slug)) for t in default_tenants().tenants}
    assert {s: c.serial_number for s, c in kept.items() if c} == {
        s: c.serial_number for s, c in seals.items() if c
    }
