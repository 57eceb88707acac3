"""Dev-mode sinks: a local SMTP server and SMS gateway that keep what they receive as JSON files.

`python -m notifications.devsinks --dir D --smtp-port P --sms-port Q` runs both; `list_mail(D)`
returns the mails received (what `mutualis mail` shows). Never for production: no auth, plain
SMTP, loopback only.
"""

from __future__ import annotations

import json
import time
import uuid
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any


def _store(directory: Path, kind: str, record: dict[str, Any]) -> Path:
    folder = directory / kind
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{time.time_ns()}-{uuid.uuid4().hex[:8]}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, ensure_ascii=False, indent=1))
    tmp.replace(path)  # readers never see half a file
    return path


def mail_record(envelope_from: str, recipients: list[str], raw: bytes) -> dict[str, Any]:
    parsed = message_from_bytes(raw, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    text = parsed.get_body(preferencelist=("plain",))
    html = parsed.get_body(preferencelist=("html",))
    return {
        "received_at": time.time(),
        "from": envelope_from,
        "to": recipients,
        "subject": str(parsed.get("Subject", "")),
        "message_id": str(parsed.get("Message-ID", "")),
        "headers": {k: str(v) for k, v in parsed.items()},
        "text": text.get_content() if text is not None else "",
        "html": html.get_content() if html is not None else None,
    }


def store_mail(directory: Path, record: dict[str, Any]) -> Path:
    return _store(directory, "mail", record)


def store_sms(directory: Path, record: dict[str, Any]) -> Path:
    return _store(directory, "sms", record)


def _read(directory: Path, kind: str) -> list[dict[str, Any]]:
    folder = Path(directory) / kind
    if not folder.is_dir():
        return []
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def list_mail(directory: str | Path) -> list[dict[str, Any]]:
    """Every mail the dev SMTP sink received, oldest first."""
    return _read(Path(directory), "mail")


def list_sms(directory: str | Path) -> list[dict[str, Any]]:
    """Every SMS the dev gateway sink received, oldest first."""
    return _read(Path(directory), "sms")
