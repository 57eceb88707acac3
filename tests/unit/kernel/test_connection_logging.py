"""Closing a TLS connection to NATS leaves no noise in the logs."""

import logging

import pytest

import mutualis_kernel.bus.connection  # noqa: F401 - installs the filter


def test_asyncio_tls_close_warning_is_dropped_and_others_kept(
    caplog: pytest.LogCaptureFixture,
) -> None:
    asyncio_log = logging.getLogger("asyncio")
    with caplog.at_level(logging.WARNING, logger="asyncio"):
        asyncio_log.warning("returning true from eof_received() has no effect when using ssl")
        asyncio_log.warning("Executing <Task> took 0.2 seconds")
    assert [r.getMessage() for r in caplog.records] == ["Executing <Task> took 0.2 seconds"]
