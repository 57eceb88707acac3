"""Which NATS errors a retry outlives: elections and reconnects, not answers."""

import nats.errors
import pytest
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, ServiceUnavailableError

from mutualis_kernel.bus.publisher import is_transient


@pytest.mark.parametrize(
    "error",
    [nats.errors.TimeoutError(), nats.errors.NoRespondersError(), ServiceUnavailableError()],
)
def test_elections_and_reconnects_are_transient(error: Exception) -> None:
    assert is_transient(error)


@pytest.mark.parametrize("error", [KeyNotFoundError(), KeyWrongLastSequenceError(), ValueError()])
def test_answers_are_not_even_when_nats_py_left_out_their_code(error: Exception) -> None:
    assert not is_transient(error)
