"""The FastAPI application every Mutualis service starts from.

Owns what is the same for every HTTP API: health and readiness, `/metrics`, tracing of each
request, the request context in logs, security headers, a bound on request bodies and one
shape for every error: `{"error": <code>, "detail": ...}`. A service adds its routers to the
app this returns; it never installs its own error handlers or tracing middleware.

Telemetry and logging are set up by the service's composition root (`setup_telemetry`,
`configure_logging`) before `create_app`; this module only uses the global providers.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from opentelemetry import trace
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Lifespan, Message, Receive, Scope, Send

from mutualis_kernel.bus.errors import PublishTimeout
from mutualis_kernel.bus.publisher import is_transient
from mutualis_kernel.config import KernelSettings
from mutualis_kernel.health import ReadinessCheck, health_router
from mutualis_kernel.telemetry import current_trace_ids, tracing_disabled
from mutualis_kernel.tenants import SLUG_PATTERN

log = structlog.stdlib.get_logger("mutualis_kernel.http")

#: Bodies larger than this are refused with 413 unless the path is an upload route.
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
TENANT_HEADER = "x-mutualis-tenant"
REQUEST_ID_HEADER = "x-request-id"
#: Seconds a client is told to wait when the bus had no quorum past the publish deadline:
#: about one more JetStream election (4.5-7 s here).
PUBLISH_RETRY_AFTER_S = 5
#: Not traced: probes and scrapes would drown the requests that matter.
UNTRACED_PATHS = ("/healthz", "/readyz", "/metrics")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class ApiError(StarletteHTTPException):
    """An HTTP error with a stable machine-readable code, raised by routes at the edge."""

    def __init__(
        self,
        status_code: int,
        code: str,
        detail: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(status_code=status_code, detail=detail, headers=headers)
        self.code = code


class PayloadTooLarge(ApiError):
    def __init__(self, limit: int) -> None:
        super().__init__(413, "payload_too_large", f"request body exceeds {limit} bytes")


class BodyStalled(ApiError):
    def __init__(self, idle_s: float) -> None:
        super().__init__(
            408, "request_timeout", f"the request body stalled for more than {idle_s:g} s"
        )


def create_app(
    *,
    title: str,
    version: str,
    settings: KernelSettings,
    lifespan: Lifespan[FastAPI] | None = None,
    readiness: Mapping[str, ReadinessCheck] | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    upload_limits: Mapping[str, int] | None = None,
) -> FastAPI:
    """A FastAPI app with the kernel's endpoints, middleware and error shapes.

    `upload_limits` maps a path prefix (say `/v1/documents`) to the body size allowed under
    it; every other path gets `max_body_bytes`.
    """
    app = FastAPI(title=title, version=version, lifespan=lifespan)
    app.include_router(health_router(readiness or {}))
    app.add_api_route("/metrics", _metrics, methods=["GET"], include_in_schema=False)

    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(PublishTimeout, _publish_timeout)

    app.add_middleware(
        RequestEdge,
        hsts=not settings.dev_mode,
        default_limit=max_body_bytes,
        prefix_limits=dict(upload_limits or {}),
        idle_timeout_s=settings.http_body_idle_timeout_s,
    )
    if settings.allowed_origins:
        # Only registered origins: no wildcard, so a page elsewhere cannot read our answers.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.allowed_origins),
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type", REQUEST_ID_HEADER, TENANT_HEADER],
            expose_headers=[REQUEST_ID_HEADER],
        )

    if not tracing_disabled():
        # With the SDK off the middleware would make no span and no metric, yet cost about a
        # quarter of a small request's CPU (measured on identity's token endpoint).
        # No span per ASGI `receive`/`send` message: three or more per request that tell an
        # SRE nothing the request's span does not, each costing CPU on the event loop.
        FastAPIInstrumentor.instrument_app(
            app,
            excluded_urls=",".join(f"{path}$" for path in UNTRACED_PATHS),
            exclude_spans=["receive", "send"],
        )
    return app


async def _metrics() -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


def _error_code(status_code: int) -> str:
    try:
        return HTTPStatus(status_code).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "http_error"


async def _http_error(_: Request, error: Exception) -> Response:
    assert isinstance(error, StarletteHTTPException)
    code = error.code if isinstance(error, ApiError) else _error_code(error.status_code)
    return JSONResponse(
        {"error": code, "detail": error.detail},
        status_code=error.status_code,
        headers=error.headers,
    )


async def _publish_timeout(_: Request, error: Exception) -> Response:
    # The request already waited out the publisher's deadline (an election, a lost quorum):
    # an unavailable service, not a bug, so 503 and when to come back rather than a 500.
    log.warning("http.publish_timeout", error=str(error))
    return JSONResponse(
        {"error": "unavailable", "detail": "the event bus has no quorum; try again shortly"},
        status_code=503,
        headers={"Retry-After": str(PUBLISH_RETRY_AFTER_S)},
    )


async def _validation_error(_: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    return JSONResponse(
        {"error": "invalid_request", "detail": readable_errors(error.errors())},
        status_code=422,
    )


def readable_errors(errors: Sequence[Any]) -> list[dict[str, str]]:
    """Pydantic's errors as `{"field", "message"}`, without the rejected input.

    The input is left out on purpose: it may be a password or a token.
    """
    readable = []
    for error in errors:
        location = ".".join(str(part) for part in error.get("loc", ()))
        message = str(error.get("msg", "invalid value"))
        context = error.get("ctx") or {}
        if error.get("type") == "json_invalid":
            # Pydantic puts the character position where a field name would be.
            location = "body"
            message = f"body is not valid JSON: {context.get('error', message)}"
        readable.append({"field": location, "message": message, "type": str(error.get("type"))})
    return readable


def _header(scope: Scope, name: str) -> str | None:
    raw = name.encode("latin-1")
    for key, value in scope.get("headers", ()):
        if key.lower() == raw:
            return bytes(value).decode("latin-1")
    return None


async def _send_json(
    send: Send, status: int, body: dict[str, Any], *, headers: dict[str, str] | None = None
) -> None:
    response = JSONResponse(body, status_code=status, headers=headers)
    await send({"type": "http.response.start", "status": status, "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})


class RequestEdge:
    """What the kernel does to every request, in one ASGI layer (there were four: each layer
    costs every request, and every message of its response, a call and a closure):

    - bounds the body: over its path's limit, 413 before reading it when Content-Length says
      so, else as soon as the count passes it (the route sees `PayloadTooLarge`, which FastAPI
      passes through as an HTTP error); a body that stalls `idle_timeout_s` between two
      chunks, 408 (`BodyStalled`);
    - binds `request_id` (the caller's, when harmless in a log line) and the tenant hint into
      structlog's context for the request's lifetime, and answers with `x-request-id`;
    - adds the headers that keep browsers from sniffing, framing or leaking referrers (and
      HSTS outside dev mode);
    - turns an unexpected exception into a 500 that names the trace, logged once (Starlette's
      ServerErrorMiddleware re-raises after answering, so uvicorn logged it a second time),
      and a JetStream call that timed out through an election into a 503 with Retry-After.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        hsts: bool,
        default_limit: int,
        prefix_limits: Mapping[str, int],
        idle_timeout_s: float = 30.0,
    ) -> None:
        self.app = app
        self.extra_headers = [
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
            (b"x-frame-options", b"DENY"),
        ]
        if hsts:
            self.extra_headers.append(
                (b"strict-transport-security", b"max-age=63072000; includeSubDomains")
            )
        self.idle_timeout_s = idle_timeout_s
        self.default_limit = default_limit
        # Longest prefix first, so `/v1/documents/big` beats `/v1`.
        self.prefix_limits = sorted(prefix_limits.items(), key=lambda kv: -len(kv[0]))

    def limit_for(self, path: str) -> int:
        for prefix, limit in self.prefix_limits:
            base = prefix.rstrip("/")
            if path == base or path.startswith(base + "/"):
                return limit
        return self.default_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = _header(scope, REQUEST_ID_HEADER)
        # A caller's id is kept only if it is harmless in a log line.
        request_id = given if given and _REQUEST_ID.match(given) else uuid.uuid4().hex
        context: dict[str, str] = {"request_id": request_id}
        tenant = _header(scope, TENANT_HEADER)
        if tenant and SLUG_PATTERN.match(tenant):
            # A hint for the log lines of unauthenticated calls; spans take the tenant of the
            # verified token only (`auth.authenticated`).
            context["tenant"] = tenant
        extra = [*self.extra_headers, (b"x-request-id", request_id.encode())]
        started = False

        async def edge_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                present = {key.lower() for key, _ in headers}
                headers.extend(h for h in extra if h[0] not in present)
                message = {**message, "headers": headers}
            await send(message)

        limit = self.limit_for(scope.get("path", ""))
        declared = _header(scope, "content-length")
        with structlog.contextvars.bound_contextvars(**context):
            if declared is not None and declared.isdigit() and int(declared) > limit:
                too_large = PayloadTooLarge(limit)
                await _send_json(
                    edge_send, 413, {"error": too_large.code, "detail": too_large.detail}
                )
                return
            received = 0
            body_done = False

            async def counting_receive() -> Message:
                nonlocal received, body_done
                if body_done:
                    # Past the body, receive() waits for the client to go away (a streamed
                    # response listens for that): no time limit there.
                    return await receive()
                try:
                    # asyncio.timeout, not wait_for: a timer, no task per chunk.
                    async with asyncio.timeout(self.idle_timeout_s):
                        message = await receive()
                except TimeoutError:
                    raise BodyStalled(self.idle_timeout_s) from None
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > limit:
                        raise PayloadTooLarge(limit)
                    body_done = not message.get("more_body", False)
                return message

            try:
                await self.app(scope, counting_receive, edge_send)
            except (PayloadTooLarge, BodyStalled) as error:
                # Reached only when the body was read outside a route (FastAPI answers for
                # those).
                if started:
                    raise
                await _send_json(
                    edge_send, error.status_code, {"error": error.code, "detail": error.detail}
                )
            except Exception as error:  # noqa: BLE001 - the last line of defence: logged, a 500
                await self._unhandled(scope, edge_send, error, started=started)

    async def _unhandled(
        self, scope: Scope, send: Send, error: Exception, *, started: bool
    ) -> None:
        if is_transient(error) and not started:
            # A JetStream call timed out through an election the code did not wait out: the
            # service is briefly unavailable, not broken; say when to come back. With the
            # traceback: it names the call that should have waited longer.
            log.warning(
                "http.bus_unavailable",
                path=scope.get("path"),
                error=type(error).__name__,
                exc_info=error,
            )
            await _send_json(
                send,
                503,
                {
                    "error": "unavailable",
                    "detail": "the event bus is electing a leader; try again shortly",
                },
                headers={"Retry-After": str(PUBLISH_RETRY_AFTER_S)},
            )
            return
        span = trace.get_current_span()
        span.record_exception(error)
        span.set_status(trace.Status(trace.StatusCode.ERROR, type(error).__name__))
        log.exception("http.unhandled_error", method=scope.get("method"), path=scope.get("path"))
        if started:
            raise error
        trace_id, _ = current_trace_ids()
        await _send_json(
            send,
            500,
            {
                "error": "internal_error",
                "detail": "the server failed to handle this request; it has been logged",
                "trace_id": trace_id,
            },
        )
