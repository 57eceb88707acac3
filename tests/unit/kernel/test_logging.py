"""Every log line is one JSON object that leads to its trace and never carries a secret."""

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from opentelemetry import trace

from mutualis_kernel.logging import configure_logging, get_logger, handling_event, looks_secret
from mutualis_kernel.testing import SpanCapture


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def json_lines(captured: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in captured.splitlines() if line.strip()]


def test_a_line_is_json_with_timestamp_level_event_service_and_logger(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("parapheur", fmt="json")

    get_logger("parapheur.circuits").info("folder.submitted", folder="F-1")

    [line] = json_lines(capsys.readouterr().out)
    assert line["event"] == "folder.submitted"
    assert line["level"] == "info"
    assert line["service"] == "parapheur"
    assert line["logger"] == "parapheur.circuits"
    assert line["folder"] == "F-1"
    assert line["timestamp"].endswith("Z")


def test_a_line_written_inside_a_span_carries_its_trace_and_span_ids(
    capsys: pytest.CaptureFixture[str],
) -> None:
    SpanCapture()  # an SDK tracer provider, so spans have real ids
    configure_logging("archive", fmt="json")

    with trace.get_tracer("test").start_as_current_span("seal") as span:
        get_logger("archive").info("record.sealed")
    context = span.get_span_context()

    [line] = json_lines(capsys.readouterr().out)
    assert line["trace_id"] == trace.format_trace_id(context.trace_id)
    assert line["span_id"] == trace.format_span_id(context.span_id)


def test_a_line_outside_any_span_has_no_trace_ids(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("archive", fmt="json")

    get_logger("archive").info("idle")

    [line] = json_lines(capsys.readouterr().out)
    assert "trace_id" not in line


def test_secret_looking_values_are_redacted_even_nested(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("identity", fmt="json")

    get_logger("identity").info(
        "login.attempted",
        user="alice",
        password="hunter2",
        signing_pin="4711",
        headers={"Authorization": "Bearer abc", "Cookie": "sid=1", "Accept": "*/*"},
        client_secret="s3cr3t",
    )

    out = capsys.readouterr().out
    [line] = json_lines(out)
    assert line["user"] == "alice"
    assert line["password"] == "[redacted]"
    assert line["signing_pin"] == "[redacted]"
    assert line["client_secret"] == "[redacted]"
    assert line["headers"] == {
        "Authorization": "[redacted]",
        "Cookie": "[redacted]",
        "Accept": "*/*",
    }
    for secret in ("hunter2", "4711", "Bearer abc", "sid=1", "s3cr3t"):
        assert secret not in out


@pytest.mark.parametrize(
    "key", ["password", "access_token", "X-Auth-Token", "apiKey", "set-cookie", "signing_pin"]
)
def test_keys_that_look_secret(key: str) -> None:
    assert looks_secret(key)


@pytest.mark.parametrize("key", ["mapping", "spinner", "tokenizer", "tenant", "event_id"])
def test_keys_that_only_contain_a_secret_word_are_kept(key: str) -> None:
    assert not looks_secret(key)


def test_standard_library_loggers_come_out_as_the_same_json(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("notifications", fmt="json")

    logging.getLogger("uvicorn.error").warning("Started server process [%d]", 42)

    [line] = json_lines(capsys.readouterr().out)
    assert line["event"] == "Started server process [42]"
    assert line["logger"] == "uvicorn.error"
    assert line["level"] == "warning"
    assert line["service"] == "notifications"


def test_context_bound_through_structlog_appears_on_every_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("notifications", fmt="json")

    with structlog.contextvars.bound_contextvars(tenant="villeurbanne", event_id="E1"):
        get_logger("notifications").info("mail.sent")
        logging.getLogger("nats").info("from the client library")

    lines = json_lines(capsys.readouterr().out)
    assert [(line["tenant"], line["event_id"]) for line in lines] == [("villeurbanne", "E1")] * 2


def test_the_event_a_consumer_handles_appears_on_every_line_while_it_does(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("notifications", fmt="json")

    with handling_event("talence", "E2", "mutualis.demo.parcel.registered.v1"):
        get_logger("notifications").info("mail.sent")
        logging.getLogger("nats").info("from the client library")
    get_logger("notifications").info("after")

    during, library, after = json_lines(capsys.readouterr().out)
    for line in (during, library):
        assert (line["tenant"], line["event_id"], line["event_type"]) == (
            "talence",
            "E2",
            "mutualis.demo.parcel.registered.v1",
        )
    assert not {"tenant", "event_id", "event_type"} & after.keys()


def test_the_handled_event_wins_over_an_outer_binding_and_a_named_value_over_both(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("notifications", fmt="json")

    with (
        structlog.contextvars.bound_contextvars(tenant="bordeaux", request_id="R1"),
        handling_event("talence", "E3", "mutualis.demo.parcel.registered.v1"),
    ):
        get_logger("notifications").info("inside")
        get_logger("notifications").info("named", tenant="pessac")

    inside, named = json_lines(capsys.readouterr().out)
    assert (inside["tenant"], inside["request_id"]) == ("talence", "R1")
    assert named["tenant"] == "pessac"


def test_an_exception_is_logged_with_its_traceback_in_the_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("archive", fmt="json")

    try:
        raise RuntimeError("disk full")
    except RuntimeError:
        get_logger("archive").exception("record.store_failed")

    [line] = json_lines(capsys.readouterr().out)
    assert "RuntimeError: disk full" in line["exception"]


def test_lines_below_the_level_are_dropped(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("archive", level="WARNING", fmt="json")

    get_logger("archive").info("chatty")
    get_logger("archive").warning("worth reading")

    assert [line["event"] for line in json_lines(capsys.readouterr().out)] == ["worth reading"]


def test_configuring_twice_does_not_duplicate_lines(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("archive", fmt="json")
    configure_logging("archive", fmt="json")

    get_logger("archive").info("once")

    assert len(json_lines(capsys.readouterr().out)) == 1
