"""A pdfsig check never passes silently: it skips saying what to install, or fails on CI."""

from pathlib import Path

import pytest

from mutualis_trust.testing import PDFSIG_MISSING, require_pdfsig


@pytest.fixture
def no_pdfsig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A machine without poppler-utils: nothing named pdfsig (or certutil) on the PATH.
    monkeypatch.setenv("PATH", str(tmp_path))


@pytest.mark.usefixtures("no_pdfsig")
def test_without_pdfsig_a_check_is_skipped_with_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="poppler-utils"):
        require_pdfsig()


@pytest.mark.usefixtures("no_pdfsig")
def test_without_pdfsig_on_ci_a_check_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="poppler-utils"):
        require_pdfsig()
    assert "libnss3-tools" in PDFSIG_MISSING
