"""The kernel's HTTP app, served by a real uvicorn on a free port, against a real NATS server."""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
import nats
import pytest
import uvicorn
from fastapi import FastAPI, Request
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from opentelemetry.trace import SpanKind
from pydantic import BaseModel, Field

from mutualis_kernel.config import KernelSettings
from mutualis_kernel.health import ReadinessCheck, nats_readiness
from mutualis_kernel.http import ApiError, create_app
from mutualis_kernel.runtime import LocalCluster
from mutualis_kernel.telemetry import setup_telemetry
from mutualis_kernel.testing import SpanCapture, free_port_block

STREAM = "HTTPAPP_EVENTS"
BODY_LIMIT = 64 * 1024
UPLOAD_LIMIT = 1024 * 1024


class Login(BaseModel):
    user: str
    password: str = Field(min_length=12)


@dataclass
class NatsHolder:
    nc: NATS | None = None
    js: JetStreamContext | None = None


def build_app(
    cluster: LocalCluster,
    *,
    streams: list[str],
    dev_mode: bool = True,
    extra_checks: dict[str, ReadinessCheck] | None = None,
    urls: list[str] | None = None,
    body_idle_timeout_s: float = 30.0,
) -> FastAPI:
    holder = NatsHolder()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        holder.nc = await nats.connect(servers=urls or cluster.client_urls)
        holder.js = holder.nc.jetstream()
        await holder.js.add_stream(
            name=STREAM, subjects=["httpapp.>"], num_replicas=cluster.replicas
        )
        try:
            yield
        finally:
            await holder.nc.close()

    app = create_app(
        title="demo",
        version="0.0.1",
        settings=KernelSettings(
            service_name="demo", dev_mode=dev_mode, http_body_idle_timeout_s=body_idle_timeout_s
        ),
        lifespan=lifespan,
        readiness={
            "nats": nats_readiness(lambda: holder.nc, lambda: holder.js, streams),
            **(extra_checks or {}),
        },
        max_body_bytes=BODY_LIMIT,
        upload_limits={"/v1/uploads": UPLOAD_LIMIT},
    )

    @app.post("/v1/logins")
    async def login(body: Login) -> dict[str, str]:
        return {"user": body.user}

    @app.post("/v1/uploads")
    async def upload(request: Request) -> dict[str, int]:
        return {"size": len(await request.body())}

    @app.get("/v1/folders/{folder_id}")
    async def folder(folder_id: str) -> dict[str, str]:
        raise ApiError(409, "folder_locked", f"folder {folder_id} is being signed")

    @app.get("/v1/boom")
    async def boom() -> None:
        raise RuntimeError("db password=hunter2 rejected")

    @app.get("/v1/electing")
    async def electing() -> None:
        # What a JetStream call left unretried raises while a stream elects its leader.
        await holder.nc.request("nobody.answers.here", b"", timeout=0.1)

    return app


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    port = free_port_block(1)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    try:
        await eventually(lambda: server.started or task.done())
        if task.done():
            task.result()
            raise RuntimeError("uvicorn stopped during startup")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            yield client
    finally:
        server.should_exit = True
        await task


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]], deadline_s: float = 10
) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    while True:
        outcome = condition()
        if isinstance(outcome, Awaitable):
            outcome = await outcome
        if outcome:
            return
        if loop.time() > end:
            raise AssertionError("condition not met before the deadline")
        await asyncio.sleep(0.02)


@pytest.fixture(scope="module", autouse=True)
def telemetry() -> None:
    setup_telemetry("demo", service_version="0.0.1", datacenter="dc1")


@pytest.fixture
async def client(nats_single: LocalCluster) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(build_app(nats_single, streams=[STREAM])) as opened:
        yield opened


async def test_liveness_answers_alive(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "alive"}


async def test_ready_when_nats_is_connected_and_the_streams_exist(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"nats": "ok"}}


async def test_not_ready_when_a_named_stream_does_not_exist(nats_single: LocalCluster) -> None:
    app = build_app(nats_single, streams=[STREAM, "NO_SUCH_STREAM"])
    async with serving(app) as client:
        response = await client.get("/readyz")

    assert response.status_code == 503
    assert response.json() == {
        "status": "not ready",
        "checks": {"nats": "stream NO_SUCH_STREAM not found"},
    }


async def test_a_hung_dependency_makes_readiness_fail_instead_of_hanging(
    nats_single: LocalCluster,
) -> None:
    async def hangs() -> str | None:
        await asyncio.Event().wait()
        return None

    app = build_app(nats_single, streams=[STREAM], extra_checks={"archive_store": hangs})
    async with serving(app) as client:
        response = await client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["checks"] == {"nats": "ok", "archive_store": "no answer within 1s"}


@pytest.mark.slow
async def test_readiness_follows_the_jetstream_quorum(fresh_cluster: LocalCluster) -> None:
    app = build_app(fresh_cluster, streams=[STREAM], urls=fresh_cluster.urls_for("dc1"))
    async with serving(app) as client:
        assert (await client.get("/readyz")).status_code == 200
        reasons: list[str] = []

        async def readiness_is(status: int) -> bool:
            response = await client.get("/readyz")
            reasons.append(response.json()["checks"]["nats"])
            return response.status_code == status

        fresh_cluster.kill("dc2")
        fresh_cluster.kill("dc3")
        await eventually(lambda: readiness_is(503), deadline_s=40)

        fresh_cluster.restart("dc2")
        await eventually(lambda: readiness_is(200), deadline_s=60)


async def test_metrics_are_exposed_in_prometheus_text(client: httpx.AsyncClient) -> None:
    await client.post("/v1/logins", json={"user": "alice", "password": "correct horse battery"})

    response = await client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "python_info" in response.text
    assert "http_server_" in response.text  # the request above, measured by OpenTelemetry


async def test_a_request_gets_a_server_span_but_probes_do_not(
    client: httpx.AsyncClient,
) -> None:
    capture = SpanCapture()

    await client.get("/healthz")
    response = await client.post(
        "/v1/logins",
        json={"user": "alice", "password": "correct horse battery"},
        headers={"X-Mutualis-Tenant": "lyon"},
    )
    assert response.status_code == 200

    def server_spans() -> list[str]:
        return [s.name for s in capture.spans if s.kind == SpanKind.SERVER]

    await eventually(lambda: "POST /v1/logins" in server_spans())
    assert not any("healthz" in name for name in server_spans())
    [span] = [s for s in capture.named("POST /v1/logins") if s.kind == SpanKind.SERVER]
    assert span.attributes is not None
    # A header anyone can send does not name the span's tenant (a verified token does).
    assert "mutualis.tenant" not in span.attributes
    # One span per request, not one more per ASGI message (`http send`, `http receive`).
    assert not [s.name for s in capture.spans if s.name.startswith("POST /v1/logins http")]


async def test_malformed_json_is_a_422_not_a_500(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/logins", content=b'{"user": "alice", ', headers={"content-type": "application/json"}
    )

    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "invalid_request"
    [problem] = body["detail"]
    assert problem["field"] == "body"
    assert problem["message"].startswith("body is not valid JSON")


async def test_a_body_that_is_not_utf8_is_refused_as_a_client_error(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/v1/logins", content=b"\xff\xfe\xfa", headers={"content-type": "application/json"}
    )

    assert 400 <= response.status_code < 500


async def test_validation_errors_are_readable_and_never_echo_the_input(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/v1/logins", json={"password": "hunter2"})

    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "invalid_request"
    fields = {item["field"]: item["message"] for item in body["detail"]}
    assert fields["body.user"] == "Field required"
    assert "at least 12 characters" in fields["body.password"]
    assert "hunter2" not in response.text


async def test_a_body_over_the_limit_is_refused_with_413(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/logins", content=b"x" * (BODY_LIMIT + 1))

    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"


async def test_a_streamed_body_over_the_limit_is_refused_with_413(
    client: httpx.AsyncClient,
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield b"x" * (BODY_LIMIT // 2)

    response = await client.post("/v1/logins", content=chunks())

    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"


async def test_a_body_that_stalls_is_refused_with_408_and_frees_the_worker(
    nats_single: LocalCluster,
) -> None:
    # A slowloris client announces a body and trickles it, holding a request open forever.
    app = build_app(nats_single, streams=[STREAM], body_idle_timeout_s=0.5)
    async with serving(app) as http:
        port = http.base_url.port
        assert port is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST /v1/logins HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\n"
            b"content-length: 1000\r\n\r\n" + b'{"user": "'
        )
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(4096), 10)
        writer.close()
        # The server still answers everyone else.
        healthy = await http.get("/healthz")
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"request_timeout" in answer
    assert healthy.status_code == 200


async def test_upload_routes_accept_larger_bodies(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/uploads", content=b"x" * (BODY_LIMIT * 4))

    assert response.status_code == 200
    assert response.json() == {"size": BODY_LIMIT * 4}


async def test_http_errors_have_the_uniform_shape(client: httpx.AsyncClient) -> None:
    locked = await client.get("/v1/folders/F-1")
    missing = await client.get("/v1/nowhere")

    assert locked.status_code == 409
    assert locked.json() == {"error": "folder_locked", "detail": "folder F-1 is being signed"}
    assert missing.status_code == 404
    assert missing.json() == {"error": "not_found", "detail": "Not Found"}


async def test_an_unhandled_error_is_a_500_naming_the_trace_without_leaking(
    client: httpx.AsyncClient,
) -> None:
    SpanCapture()

    response = await client.get("/v1/boom")

    assert response.status_code == 500
    body = response.json()
    assert body["error"] == "internal_error"
    assert body["trace_id"] is not None
    assert len(body["trace_id"]) == 32
    assert "hunter2" not in response.text


async def test_security_headers_are_on_every_response(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/nowhere")

    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-frame-options"] == "DENY"
    assert "strict-transport-security" not in response.headers  # dev mode
    assert response.headers["x-request-id"]


async def test_hsts_is_sent_outside_dev_mode(nats_single: LocalCluster) -> None:
    async with serving(build_app(nats_single, streams=[STREAM], dev_mode=False)) as client:
        response = await client.get("/healthz")

    assert response.headers["strict-transport-security"].startswith("max-age=")


async def test_a_callers_request_id_is_kept(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})

    assert response.headers["x-request-id"] == "abc-123"


def test_with_the_sdk_disabled_no_tracing_middleware_is_installed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    app = create_app(title="untraced", version="1", settings=KernelSettings(dev_mode=True))
    assert not getattr(app, "_is_instrumented_by_opentelemetry", False)
    monkeypatch.setenv("OTEL_SDK_DISABLED", "false")
    app = create_app(title="traced", version="1", settings=KernelSettings(dev_mode=True))
    assert getattr(app, "_is_instrumented_by_opentelemetry", False)


async def test_a_bus_call_timing_out_in_an_election_is_a_503_with_retry_after(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/v1/electing")

    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.json()["error"] == "unavailable"
