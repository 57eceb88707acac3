"""Real SoftHSM token, dev PKI and dev TSA process for the trust tests."""

from mutualis_trust.testing import trust_env  # noqa: F401 - a fixture
