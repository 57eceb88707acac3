"""A TSA's refusal reads as a refusal, with the TSA's reason, not as an unparsable reply."""

from __future__ import annotations

import pytest
from asn1crypto import core, tsp  # type: ignore[import-untyped]

from mutualis_trust.tsa import TimestampError, TimestampToken


def _refusal(reason: str) -> bytes:
    # RFC 3161: a refusal is a TimeStampResp with a status and no token at all.
    status = tsp.PKIStatusInfo({"status": "rejection", "status_string": [reason]})
    return core.Sequence(contents=status.dump()).dump()  # type: ignore[no-any-return]


def test_a_refusal_says_what_the_tsa_said() -> None:
    with pytest.raises(TimestampError) as refused:
        TimestampToken.from_response(_refusal("Error during serial number generation."))
    assert str(refused.value) == (
        "TSA refused the request: rejection Error during serial number generation."
    )


def test_garbage_is_still_not_a_timestamp_response() -> None:
    with pytest.raises(TimestampError, match="not a timestamp response"):
        TimestampToken.from_response(b"\x30\x03\x02\x01\x00")
