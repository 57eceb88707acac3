"""Faster NATS message headers both ways, installed into nats-py when the bus is imported.

nats-py 2.16 rejects a header name holding whitespace with a per-character generator; with the
dozen `ce-*`, `traceparent` and `Nats-*` headers of a CloudEvent in binary mode that costs about
45 µs per received message — a third of what a raw consumer spends on a whole message. This
parser returns the same dictionary (a test compares both on tricky inputs) with one regular
expression search per name, about three times faster. If nats-py's parser changes shape, it is
left alone.

A message read back from a stream (`get_msg`, so every KV get of a key written with
compare-and-set, whose `Nats-Expected-*` headers are stored with it) has its headers parsed by
nats-py with the standard library's email parser, about 100 µs each; the same fast parser
stands in for it there.

Going out, nats-py writes a header block with four `bytearray.extend`, two encodes, a strip,
a translate and a regular expression per header: about 10 µs of an event's publish with
CloudEvents' dozen. `header_block` gives the same bytes (a test compares both on tricky
inputs) checking each name once per process and translating only values that hold a line
break; it is installed in nats-py's publish only for the nats-py release it was compared
with (`PUBLISH_CHECKED_WITH`), any other keeps nats-py's own.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine, Mapping
from email.parser import BytesParser
from typing import Any

import nats.aio.client as nats_py
import nats.js.client
import nats.js.manager
from nats import errors
from nats.aio.client import Client
from nats.protocol import command

_CRLF = b"\r\n"
# For str patterns `\s` matches exactly the characters for which str.isspace() is true.
_WHITESPACE = re.compile(r"\s")


#: Header names already checked, raw -> decoded (None: not a valid name). The same dozen names
#: come with every event, so each is checked once; bounded against a stream of odd names.
_NAMES: dict[bytes, str | None] = {}
_NAMES_KEPT = 1024


def _header_name(raw_name: bytes) -> str | None:
    key: str | None
    try:
        key = raw_name.strip().decode("ascii")
    except UnicodeDecodeError:
        key = None
    if key is not None and _WHITESPACE.search(key) is not None:
        key = None
    if len(_NAMES) < _NAMES_KEPT:
        _NAMES[raw_name] = key
    return key


def parse_header_lines(raw: bytes) -> dict[str, str]:
    """`Name: Value` lines into a dict; malformed lines are skipped, as nats-py does."""
    headers: dict[str, str] = {}
    names = _NAMES
    for line in raw.split(_CRLF):
        name, colon, value = line.partition(b":")
        if not colon:
            continue
        key = names[name] if name in names else _header_name(name)
        if key is not None:
            headers[key] = value.strip().decode("utf-8", "replace")
    return headers


_original = Client.__dict__.get("_parse_header_lines")
#: nats-py's own parser, kept so tests can compare the two.
nats_py_parser: Callable[[bytes], dict[str, str]] | None = (
    _original.__func__ if isinstance(_original, staticmethod) else None
)


class StoredHeaderParser:
    """Stands in for `email.parser.BytesParser` where nats-py parses the header block of a
    message read back from a stream; nats-py only calls `parsebytes(...).items()`."""

    def parsebytes(self, raw: bytes) -> dict[str, str]:
        return parse_header_lines(raw)


#: nats-py's rule for a header name (an RFC 9110 token) and for line breaks in a value.
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VALUE_NEWLINES = str.maketrans({"\r": " ", "\n": " "})
_NAMES_SENT: set[str] = set()


def header_block(headers: Mapping[str, str]) -> bytes:
    """The `NATS/1.0` header block nats-py would write for `headers`, byte for byte."""
    lines = ["NATS/1.0"]
    for name, value in headers.items():
        key = name.strip()
        if not key:
            continue  # nats-py skips empty names
        if key not in _NAMES_SENT:
            if not _HEADER_NAME.fullmatch(key):
                raise errors.BadHeaderError(key)
            if len(_NAMES_SENT) < _NAMES_KEPT:
                _NAMES_SENT.add(key)
        text = value.strip()
        if "\r" in text or "\n" in text:
            text = text.translate(_VALUE_NEWLINES)
        lines.append(f"{key}: {text}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


#: The nats-py release whose `_send_publish` `_send_publish_fast` reproduces.
PUBLISH_CHECKED_WITH = "2.16.0"
#: nats-py's own, kept so tests can compare the two.
nats_py_send_publish: Callable[..., Coroutine[Any, Any, None]] = Client._send_publish


async def _send_publish_fast(
    self: Client,
    subject: str,
    reply: str,
    payload: bytes,
    payload_size: int,
    headers: Mapping[str, str] | None,
) -> None:
    # nats-py 2.16's `_send_publish` with the header block built by `header_block`.
    if subject == "":
        raise errors.BadSubjectError
    if headers is None:
        pub_cmd = command.pub_cmd(subject, reply, payload)
    else:
        pub_cmd = command.hpub_cmd(subject, reply, header_block(headers), payload)
    self.stats["out_msgs"] += 1
    self.stats["out_bytes"] += payload_size
    await self._send_command(pub_cmd)
    if self._flush_queue is not None and self._flush_queue.empty():
        await self._flush_pending()


def install() -> bool:
    """Put the fast parser in place of nats-py's, and the fast header writer if nats-py is the
    release it was checked with; False when nats-py has no parser hook."""
    if nats_py.__version__ == PUBLISH_CHECKED_WITH:
        Client._send_publish = _send_publish_fast  # type: ignore[method-assign]
    if nats_py_parser is None:
        return False
    Client._parse_header_lines = staticmethod(parse_header_lines)  # type: ignore[method-assign]
    for module in (nats.js.manager, nats.js.client):
        if getattr(module, "BytesParser", None) is BytesParser:
            module.BytesParser = StoredHeaderParser  # type: ignore[attr-defined]
    return True
