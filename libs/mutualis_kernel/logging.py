"""Structured logging for a Mutualis process: one JSON line per event, on stdout.

Owns the structlog configuration and the root handler of the standard library, so that
Mutualis code (structlog), uvicorn and nats-py (stdlib `logging`) all come out in the same
shape: `timestamp` (ISO, UTC), `level`, `event`, `service`, `logger`, plus `trace_id` /
`span_id` of the current span and whatever was bound with
`structlog.contextvars.bind_contextvars` (tenant, request_id...) or by `handling_event` (the
tenant, id and type of the event a consumer is handling). Values of keys that look secret are
replaced before rendering.

Run uvicorn with `log_config=None`, or it installs its own handlers over these.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping
from contextvars import ContextVar, Token
from typing import Any, Literal, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from mutualis_kernel.telemetry import current_trace_ids

LogFormat = Literal["auto", "json", "console"]

REDACTED = "[redacted]"

#: Words that mark a key as secret, matched against the words of a key (`signing_pin`,
#: `X-Auth-Token`, `clientSecret`) so that `mapping` or `spinner` stay readable.
SECRET_WORDS = frozenset(
    {
        "password",
        "passwords",
        "passwd",
        "passphrase",
        "secret",
        "secrets",
        "token",
        "tokens",
        "pin",
        "authorization",
        "cookie",
        "cookies",
        "apikey",
        "credentials",
    }
)

_WORD_SPLIT = re.compile(r"[^a-zA-Z0-9]+|(?<=[a-z0-9])(?=[A-Z])")


def looks_secret(key: str) -> bool:
    words = [w.lower() for w in _WORD_SPLIT.split(key) if w]
    return not SECRET_WORDS.isdisjoint(words) or "apikey" in "".join(words)


def redact_secrets(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Replace the value of every key that looks secret, in nested mappings too."""
    return _redacted(event_dict)


def _redacted(mapping: Mapping[str, Any]) -> dict[str, Any]:
    clean: dict[str, Any] = {}
    for key, value in mapping.items():
        if key != "event" and isinstance(key, str) and looks_secret(key):
            clean[key] = REDACTED
        elif isinstance(value, Mapping):
            clean[key] = _redacted(value)
        else:
            clean[key] = value
    return clean


def add_trace_ids(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Add the current span's ids, so a log line leads to its trace."""
    trace_id, span_id = current_trace_ids()
    if trace_id is not None:
        event_dict.setdefault("trace_id", trace_id)
        event_dict.setdefault("span_id", span_id)
    return event_dict


def _add_service(service_name: str) -> Processor:
    def add_service(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
        event_dict.setdefault("service", service_name)
        return event_dict

    return add_service


class _StdoutHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stdout` is at emit time (it is replaced under test capture)."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self) -> TextIO:
        return sys.stdout

    @stream.setter
    def stream(self, _: TextIO) -> None:
        pass


_handler: logging.Handler | None = None

#: The event a consumer is handling (tenant, event id, event type), for its log lines. One
#: variable set once per event: binding the three through structlog costs a variable and a
#: reset per key, and a consumer does it for every event whether or not anything is logged.
_handled_event: ContextVar[tuple[str, str, str] | None] = ContextVar(
    "mutualis_handled_event", default=None
)


# Lower case, like contextlib.suppress: it reads as what it does, `with handling_event(...)`.
class handling_event:
    """Log lines written meanwhile carry `tenant`, `event_id` and `event_type`.

    A class rather than `@contextmanager`: its generator machinery cost more than the
    variable itself, once for every event a consumer handles."""

    __slots__ = ("_token", "_value")
    _token: Token[tuple[str, str, str] | None]

    def __init__(self, tenant: str, event_id: str, event_type: str) -> None:
        self._value = (tenant, event_id, event_type)

    def __enter__(self) -> None:
        self._token = _handled_event.set(self._value)

    def __exit__(self, *_: object) -> None:
        _handled_event.reset(self._token)


def add_handled_event(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """The handled event's keys, unless the call itself names them. Runs before structlog's
    context is merged, so inside a handler the event's tenant wins over an outer binding."""
    handled = _handled_event.get()
    if handled is not None:
        tenant, event_id, event_type = handled
        event_dict.setdefault("tenant", tenant)
        event_dict.setdefault("event_id", event_id)
        event_dict.setdefault("event_type", event_type)
    return event_dict


def configure_logging(
    service_name: str, *, level: str | int = "INFO", fmt: LogFormat = "auto"
) -> None:
    """Route structlog and the standard library through one renderer on stdout.

    `auto` renders JSON unless stdout is a terminal. Safe to call again (tests do): the
    previous handler is replaced, other handlers on the root logger are left alone.
    """
    global _handler
    as_json = fmt == "json" or (fmt == "auto" and not sys.stdout.isatty())
    shared: list[Processor] = [
        add_handled_event,
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        _add_service(service_name),
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
        add_trace_ids,
    ]
    renderer: Processor = (
        structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer()
    )
    final: list[Processor] = [
        structlog.stdlib.ProcessorFormatter.remove_processors_meta,
        redact_secrets,
    ]
    if as_json:
        final.append(structlog.processors.format_exc_info)
    final.append(renderer)

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Not cached: module-level loggers must follow a later configure_logging call.
        cache_logger_on_first_use=False,
    )

    handler = _StdoutHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(foreign_pre_chain=shared, processors=final)
    )
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    _handler = handler
    # uvicorn's own loggers do not propagate by default; send them to the root handler.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        stdlib_logger = logging.getLogger(name)
        stdlib_logger.handlers.clear()
        stdlib_logger.propagate = True


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.stdlib.get_logger(name)
