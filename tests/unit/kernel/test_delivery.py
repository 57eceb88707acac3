"""What a consumer reads from a delivered message's ack subject is what nats-py reads."""

import pytest
from nats.aio.msg import Msg

from mutualis_kernel.bus import pull

SUBJECTS = [
    "$JS.ACK.DEMO_EVENTS.kernel-bordeaux.1.12345.12001.1733580000000000000.100",
    "$JS.ACK.DEMO_EVENTS.kernel-bordeaux.4.7.7.1733580000000000000.0",
    # With a JetStream domain and account hash (v2): left to nats-py.
    "$JS.ACK.hub.ACCHASH.DEMO_EVENTS.kernel-bordeaux.2.99.98.1733580000000000000.3.rand",
]


@pytest.mark.parametrize("reply", SUBJECTS)
def test_delivery_count_and_stream_sequence_are_those_nats_py_reads(reply: str) -> None:
    message = Msg(None, subject="evt.demo.x", reply=reply, data=b"{}")  # type: ignore[arg-type]

    metadata = message.metadata
    assert pull.delivery(message) == (metadata.num_delivered, metadata.sequence.stream)


def test_a_message_that_did_not_come_from_jetstream_is_refused_as_nats_py_refuses_it() -> None:
    from nats.errors import NotJSMessageError

    message = Msg(None, subject="x", reply="_INBOX.abc", data=b"")  # type: ignore[arg-type]

    with pytest.raises(NotJSMessageError):
        pull.delivery(message)
