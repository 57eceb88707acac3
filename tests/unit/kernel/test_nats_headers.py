"""The header parser the bus installs into nats-py gives exactly what nats-py's own gives."""

from email.parser import BytesParser

import pytest
from nats.aio.client import Client
from nats.errors import BadHeaderError
from nats.js.manager import JetStreamManager

from mutualis_kernel.bus import nats_headers

CLOUDEVENT = (
    b"ce-specversion: 1.0\r\nce-id: 01a226ab-4864-7b5c\r\nce-type: mutualis.demo.parcel.v1\r\n"
    b"ce-tenant: bordeaux\r\ntraceparent: 00-0af7651916cd43dd-b7ad6b7169203331-01\r\n"
    b"Nats-Msg-Id: 01a226ab\r\n\r\n"
)
TRICKY = [
    b"",
    b"\r\n\r\n",
    b"Name:Value\r\nOther:\tTabbed \r\n",
    b"no colon here\r\nKept: yes\r\n",
    b"Bad Name: refused\r\nBad\x1cName: refused too\r\nGood: kept\r\n",
    "Nom-\u00e9: non-ascii name skipped\r\n".encode(),
    b"Value: caf\xc3\xa9 \xff broken utf-8\r\n",
    b"Dup: first\r\nDup: second\r\n",
    b"Colon: a:b:c\r\n:empty name\r\n",
]


@pytest.mark.parametrize("raw", [CLOUDEVENT, *TRICKY])
def test_the_fast_parser_agrees_with_nats_py(raw: bytes) -> None:
    assert nats_headers.nats_py_parser is not None
    assert nats_headers.parse_header_lines(raw) == nats_headers.nats_py_parser(raw)


def test_importing_the_bus_installs_it() -> None:
    import mutualis_kernel.bus  # noqa: F401 - the import is the point

    assert Client._parse_header_lines is nats_headers.parse_header_lines


KV_WRITE = b"Nats-Expected-Last-Subject-Sequence: 41\r\n\r\n"
KV_DELETE = b"KV-Operation: DEL\r\nNats-Expected-Last-Subject-Sequence: 7\r\n\r\n"


@pytest.mark.parametrize("raw", [CLOUDEVENT, KV_WRITE, KV_DELETE, b"\r\n"])
def test_stored_message_headers_parse_as_the_email_parser_did(raw: bytes) -> None:
    expected = dict(BytesParser().parsebytes(raw).items())

    assert dict(nats_headers.StoredHeaderParser().parsebytes(raw).items()) == expected


def test_nats_py_reads_stored_headers_with_the_fast_parser() -> None:
    assert isinstance(JetStreamManager(Client())._hdr_parser, nats_headers.StoredHeaderParser)


OUTGOING = [
    {},
    {"Nats-Msg-Id": "01a226ab", "ce-type": "mutualis.demo.parcel.v1", "ce-time": "2026-12-07"},
    {"  Padded-Name ": "  padded value\t"},
    {"": "an empty name is skipped", "Kept": "yes"},
    {"Line-Break": "first\r\nInjected: header", "Lone-Cr": "a\rb", "Lone-Lf": "a\nb"},
    {"Unicode": "café ☕"},
]


async def sent_by(send_publish: object, headers: dict[str, str] | None) -> bytes:
    client = Client()
    sent: list[bytes] = []

    async def capture(command: bytes, priority: bool = False) -> None:
        sent.append(command)

    client._send_command = capture  # type: ignore[method-assign]
    client._flush_queue = None
    await send_publish(client, "evt.demo", "_INBOX.r", b"{}", 2, headers)  # type: ignore[operator]
    return b"".join(sent)


@pytest.mark.parametrize("headers", [*OUTGOING, None])
async def test_the_fast_header_writer_sends_what_nats_py_sends(
    headers: dict[str, str] | None,
) -> None:
    fast = await sent_by(nats_headers._send_publish_fast, headers)

    assert fast == await sent_by(nats_headers.nats_py_send_publish, headers)


@pytest.mark.parametrize("name", ["Bad Name", "Bad:Name", "Nom-é"])
async def test_a_name_nats_py_refuses_is_refused(name: str) -> None:
    for send_publish in (nats_headers._send_publish_fast, nats_headers.nats_py_send_publish):
        with pytest.raises(BadHeaderError):
            await sent_by(send_publish, {name: "value"})


def test_the_fast_header_writer_is_installed_for_the_release_it_was_checked_with() -> None:
    import nats.aio.client

    import mutualis_kernel.bus  # noqa: F401 - the import is the point

    expected = (
        nats_headers._send_publish_fast
        if nats.aio.client.__version__ == nats_headers.PUBLISH_CHECKED_WITH
        else nats_headers.nats_py_send_publish
    )
    assert Client._send_publish is expected
