"""Software keys are a dev-mode escape hatch when no PKCS#11 module exists, and say so loudly."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from mutualis_trust.pkcs11 import software_fallback_allowed

MISSING = Path("/nonexistent/libpkcs11.so")


def test_outside_dev_mode_a_missing_module_never_allows_software_keys() -> None:
    assert software_fallback_allowed(dev_mode=False, module_path=MISSING) is False


def test_in_dev_mode_a_missing_module_allows_software_keys_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="mutualis_trust.pkcs11"):
        assert software_fallback_allowed(dev_mode=True, module_path=MISSING) is True
    assert any("SOFTWARE KEYS" in r.getMessage() for r in caplog.records)


def test_a_present_module_is_always_used(tmp_path: Path) -> None:
    module = tmp_path / "libfake.so"
    module.write_bytes(b"")
    assert software_fallback_allowed(dev_mode=True, module_path=module) is False
