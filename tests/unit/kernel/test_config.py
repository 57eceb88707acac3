"""Settings refuse development secrets outside dev mode."""

import pytest
from pydantic import SecretStr, ValidationError

from mutualis_kernel.config import KernelSettings


class SigningSettings(KernelSettings):
    signing_pin: SecretStr = SecretStr("changeme")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MUTUALIS_DEV_MODE", "MUTUALIS_SIGNING_PIN"):
        monkeypatch.delenv(name, raising=False)


def test_a_secret_left_at_its_default_is_refused_outside_dev_mode() -> None:
    with pytest.raises(ValidationError, match="signing_pin still has its development default"):
        SigningSettings(dev_mode=False)


def test_a_secret_left_at_its_default_is_accepted_in_dev_mode() -> None:
    settings = SigningSettings(dev_mode=True)

    assert settings.signing_pin.get_secret_value() == "changeme"


def test_dev_mode_can_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MUTUALIS_DEV_MODE", "true")

    assert SigningSettings().dev_mode is True


def test_a_real_secret_from_the_environment_is_accepted_outside_dev_mode(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MUTUALIS_SIGNING_PIN", "4711-not-a-default")

    settings = SigningSettings()

    assert settings.signing_pin.get_secret_value() == "4711-not-a-default"


def test_the_secret_never_shows_in_the_settings_repr() -> None:
    settings = SigningSettings(dev_mode=True)

    assert "changeme" not in repr(settings)
