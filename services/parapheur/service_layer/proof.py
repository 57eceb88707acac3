"""The proof report of a folder: every step, actor, time, hash and signature, as JSON or HTML.

Built from the folder's stored history, so it says what happened rather than what the current
state suggests. Erased people appear under their pseudonym, and so does the subject of their
signing certificate (it names them); the certificate's SHA-256 and the document hashes are
shown as signed, so the report still pins down which certificate signed what, and the PDF
itself keeps every signature intact.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

from mutualis_kernel.events import Envelope, Event
from parapheur.domain.events import (
    FolderCompleted,
    FolderOverdue,
    FolderRejected,
    FolderSubmitted,
    FolderWithdrawn,
    ReminderDue,
    StepApproved,
    StepAssigned,
    StepRejected,
    StepSigned,
)
from parapheur.domain.model import Folder

Shown = Callable[[str], str]


def proof_report(
    folder: Folder, history: tuple[Envelope[Event], ...], shown: Shown
) -> dict[str, Any]:
    entries: list[dict[str, Any]] = []
    for envelope in history:
        event = envelope.data
        entry: dict[str, Any] = {
            "event": event.event_name,
            "event_id": envelope.id,
            "time": envelope.time.isoformat(),
        }
        match event:
            case FolderSubmitted():
                entry.update(
                    actor=shown(event.submitted_by),
                    document_sha256=event.document.sha256,
                    document_size=event.document.size,
                    attachments=[
                        {"filename": a.filename, "sha256": a.sha256, "size": a.size}
                        for a in event.attachments
                    ],
                )
            case StepAssigned():
                entry.update(
                    step=event.step,
                    kind=event.kind,
                    users=[shown(u) for u in event.users],
                    desks=list(event.desks),
                )
            case StepApproved():
                entry.update(
                    step=event.step,
                    actor=shown(event.actor),
                    slot=event.slot,
                    on_behalf_of=_maybe(shown, event.on_behalf_of),
                    comment=event.comment,
                )
            case StepSigned():
                entry.update(
                    step=event.step,
                    actor=shown(event.actor),
                    on_behalf_of=_maybe(shown, event.on_behalf_of),
                    comment=event.comment,
                    document_sha256=event.document.sha256,
                    document_size=event.document.size,
                    signature={
                        **event.signature.model_dump(
                            mode="json", exclude={"signer", "on_behalf_of"}
                        ),
                        "certificate_subject": _subject(
                            shown, event.signature.signer, event.signature.certificate_subject
                        ),
                    },
                )
            case StepRejected():
                entry.update(
                    step=event.step,
                    actor=shown(event.actor),
                    on_behalf_of=_maybe(shown, event.on_behalf_of),
                    reason=event.reason,
                )
            case FolderWithdrawn():
                entry.update(actor=shown(event.by), step=event.step, reason=event.reason)
            case FolderRejected():
                entry.update(step=event.step, reason=event.reason)
            case FolderCompleted():
                entry.update(
                    document_sha256=event.document.sha256, document_size=event.document.size
                )
            case ReminderDue() | FolderOverdue():
                entry.update(step=event.step, due_at=event.due_at.isoformat())
        entries.append(entry)
    return {
        "folder_id": folder.id,
        "tenant": folder.tenant,
        "title": folder.title,
        "status": folder.status,
        "circuit": folder.circuit.model_dump(mode="json") if folder.circuit else None,
        "original_document": folder.original.model_dump(mode="json") if folder.original else None,
        "current_document": folder.document.model_dump(mode="json") if folder.document else None,
        "signatures": [
            {
                **s.model_dump(mode="json"),
                "signer": shown(s.signer),
                "on_behalf_of": _maybe(shown, s.on_behalf_of),
                "certificate_subject": _subject(shown, s.signer, s.certificate_subject),
            }
            for s in folder.signatures
        ],
        "history": entries,
    }


def _maybe(shown: Shown, value: str | None) -> str | None:
    return shown(value) if value else None


def _subject(shown: Shown, signer: str, subject: str) -> str:
    # An erased signer's certificate subject carries their name: show the pseudonym instead.
    alias = shown(signer)
    return subject if alias == signer else alias


def proof_html(report: dict[str, Any]) -> str:
    """A readable, self-contained page of the same report (no scripts, no external assets)."""
    e = html.escape
    rows = []
    for entry in report["history"]:
        details = {k: v for k, v in entry.items() if k not in ("event", "time", "event_id")}
        cells = "<br>".join(f"<b>{e(str(k))}</b>: {e(str(v))}" for k, v in details.items())
        rows.append(
            f"<tr><td>{e(entry['time'])}</td><td>{e(entry['event'])}</td><td>{cells}</td></tr>"
        )
    signatures = "".join(
        f"<li>Step {s['step'] + 1} ({e(s['kind'])}): {e(str(s['signer']))}"
        f"{' for ' + e(str(s['on_behalf_of'])) if s['on_behalf_of'] else ''}, "
        f"{e(s['certificate_subject'])}, {e(s['level'])}, {e(s['signed_at'])}</li>"
        for s in report["signatures"]
    )
    current = report["current_document"] or {}
    return (
        "<!doctype html><html lang='fr'><head><meta charset='utf-8'>"
        f"<title>Proof — {e(report['title'])}</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td{border:1px solid #999;padding:4px;vertical-align:top}</style></head><body>"
        f"<h1>{e(report['title'])}</h1>"
        f"<p>Folder <code>{e(report['folder_id'])}</code> of <b>{e(report['tenant'])}</b>: "
        f"<b>{e(report['status'])}</b></p>"
        f"<p>Current document SHA-256: <code>{e(str(current.get('sha256', '')))}</code> "
        f"({e(str(current.get('size', '')))} bytes)</p>"
        f"<h2>Signatures</h2><ul>{signatures or '<li>none</li>'}</ul>"
        "<h2>History</h2><table><tr><th>Time</th><th>Event</th><th>Details</th></tr>"
        f"{''.join(rows)}</table></body></html>"
    )
