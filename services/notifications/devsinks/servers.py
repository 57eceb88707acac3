"""The dev sinks' servers: aiosmtpd for mail, a tiny FastAPI app for SMS (also used in tests)."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from notifications.devsinks import mail_record, store_mail, store_sms


class MailSink:
    """An aiosmtpd handler that stores every accepted mail.

    For tests of failure handling: `forced_replies` answer the next mails' content with the
    given SMTP replies instead (nothing stored); `drop_after_data` makes the next mails be
    stored and then the connection closed before the final reply, as a relay that queued a
    mail and crashed (or lost the network) before saying so.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.forced_replies: list[str] = []
        self.drop_after_data = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.forced_replies:
            return self.forced_replies.pop(0)
        content = envelope.original_content or envelope.content or b""
        raw = content if isinstance(content, bytes) else content.encode()
        record = mail_record(envelope.mail_from or "", list(envelope.rcpt_tos), raw)
        record["tls"] = session.ssl is not None
        record["authenticated"] = bool(session.authenticated)
        store_mail(self.directory, record)
        if self.drop_after_data > 0:
            self.drop_after_data -= 1
            if server.transport is not None:
                server.transport.close()
        return "250 Message accepted for delivery"


def smtp_controller(
    directory: Path,
    port: int,
    *,
    tls_context: ssl.SSLContext | None = None,
    require_starttls: bool = False,
    **kwargs: Any,
) -> tuple[Controller, MailSink]:
    sink = MailSink(directory)
    controller = Controller(
        sink,
        hostname="127.0.0.1",
        port=port,
        tls_context=tls_context,
        require_starttls=require_starttls,
        **kwargs,
    )
    return controller, sink


def sms_app(directory: Path) -> FastAPI:
    app = FastAPI(title="Mutualis dev SMS gateway")

    @app.get("/healthz")
    async def alive() -> dict[str, str]:
        # Answered once both sinks run: `mutualis up` waits for it before starting services.
        return {"status": "alive"}

    @app.post("/sms")
    async def receive(request: Request) -> JSONResponse:
        body = await request.json()
        if not isinstance(body, dict) or not body.get("to") or "text" not in body:
            return JSONResponse({"error": "to and text are required"}, status_code=400)
        path = store_sms(directory, {**body, "headers": dict(request.headers)})
        return JSONResponse({"id": path.stem}, status_code=202)

    return app
