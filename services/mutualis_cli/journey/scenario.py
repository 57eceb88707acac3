"""One folder's journey through the whole platform, as a commune's agents live it.

An agent logs in through identity (authorization code + PKCE, as a browser would) and submits
a PDF into a circuit visa -> signature -> seal; a second agent approves; the signatory is asked
to step up, gives a one-time code and signs; the parapheur applies the commune's seal; the
archive ingests the signed folder and its archivist seals the journal; notifications reach
the people involved. Everything goes through the public HTTP APIs; one trace covers it all.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from opentelemetry import propagate, trace

from mutualis_cli.journey.login import LOA_SUBSTANTIAL, browser_login

DEMO_PASSWORD = "mutualis-demo-2025"  # noqa: S105 - the dev seed's published demo password
CIRCUIT_ID = "demo-arrete"

_tracer = trace.get_tracer("mutualis_cli.journey")


@dataclass(frozen=True)
class PlatformUrls:
    identity: str
    parapheur: str
    archive: str
    notifications: str
    #: Where the dev mail sink writes (None when mail goes to a real relay).
    mail_dir: Path | None = None


@dataclass(frozen=True)
class Person:
    username: str
    totp_secret: str | None = None


@dataclass
class JourneyResult:
    tenant: str
    folder_id: str = ""
    folder_status: str = ""
    signed_pdf: str = ""
    signed_pdf_sha256: str = ""
    record_id: str = ""
    record_sha256: str = ""
    fixity_ok: bool = False
    journal_seal: str = ""
    notifications: list[dict[str, Any]] = field(default_factory=list)
    trace_id: str = ""
    steps: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


class JourneyFailed(RuntimeError):
    pass


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    payload += "=" * (-len(payload) % 4)
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload))
    return claims


def people(tenant: str) -> dict[str, Person]:
    """The demo accounts the dev seed creates in every tenant."""
    from identity.devseed import demo_totp_secret

    return {
        "submitter": Person(f"agent.{tenant}"),
        "reviewer": Person(f"admin.{tenant}"),
        "signatory": Person(f"signataire.{tenant}", demo_totp_secret(tenant)),
        "archivist": Person(f"archiviste.{tenant}"),
    }


class Journey:
    def __init__(
        self,
        urls: PlatformUrls,
        tenant: str,
        *,
        out_dir: Path,
        on_step: Callable[[str], None] = lambda _: None,
        timeout_s: float = 60.0,
    ) -> None:
        self.urls = urls
        self.tenant = tenant
        self.out_dir = out_dir
        self.on_step = on_step
        self.timeout_s = timeout_s
        self.result = JourneyResult(tenant=tenant)
        self._started = time.monotonic()

    # -- plumbing ------------------------------------------------------------------------
    def _headers(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    @staticmethod
    def _client(timeout: float = 30) -> httpx.AsyncClient:
        async def carry_trace(request: httpx.Request) -> None:
            # Every request, logins included, continues the journey's trace in the services.
            propagate.inject(request.headers)

        return httpx.AsyncClient(timeout=timeout, event_hooks={"request": [carry_trace]})

    def _step(self, text: str) -> None:
        elapsed = round(time.monotonic() - self._started, 3)
        self.result.steps.append({"step": text, "at_s": elapsed})
        self.on_step(text)

    @staticmethod
    def _expect(response: httpx.Response, *statuses: int) -> dict[str, Any]:
        if response.status_code not in statuses:
            raise JourneyFailed(
                f"{response.request.method} {response.request.url.path} answered "
                f"{response.status_code}: {response.text[:500]}"
            )
        body: dict[str, Any] = response.json() if response.content else {}
        return body

    async def _eventually(self, what: str, probe: Callable[[], Any], interval: float = 0.2) -> Any:
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            found = await probe()
            if found:
                return found
            await asyncio.sleep(interval)
        raise JourneyFailed(f"{what}: not seen within {self.timeout_s:.0f}s")

    # -- the day -------------------------------------------------------------------------
    async def run(self, pdf: bytes) -> JourneyResult:
        with _tracer.start_as_current_span(
            "journey folder", attributes={"mutualis.tenant": self.tenant}
        ) as span:
            self.result.trace_id = f"{span.get_span_context().trace_id:032x}"
            try:
                await self._run(pdf)
            finally:
                self.result.seconds = round(time.monotonic() - self._started, 3)
        return self.result

    async def _run(self, pdf: bytes) -> None:
        cast = people(self.tenant)
        issuer = self.urls.identity
        async with (
            self._client() as submitter_browser,
            self._client() as reviewer_browser,
            self._client() as signatory_browser,
            self._client() as archivist_browser,
            self._client(timeout=60) as api,
        ):
            submitter = await browser_login(
                submitter_browser, issuer, cast["submitter"].username, DEMO_PASSWORD
            )
            self._step(f"{cast['submitter'].username} logged in through identity")
            reviewer = await browser_login(
                reviewer_browser, issuer, cast["reviewer"].username, DEMO_PASSWORD
            )
            signatory = await browser_login(
                signatory_browser, issuer, cast["signatory"].username, DEMO_PASSWORD
            )
            reviewer_id = _claims(reviewer.access_token)["sub"]
            signatory_id = _claims(signatory.access_token)["sub"]

            circuit = {
                "id": CIRCUIT_ID,
                "name": "Arrêté (visa, signature, cachet)",
                "steps": [
                    {"kind": "visa", "actors": [{"kind": "user", "id": reviewer_id}]},
                    {"kind": "signature", "actors": [{"kind": "user", "id": signatory_id}]},
                    {"kind": "seal", "label": "Cachet de la commune"},
                ],
            }
            self._expect(
                await api.put(
                    f"{self.urls.parapheur}/v1/circuits/{CIRCUIT_ID}",
                    json=circuit,
                    headers=self._headers(reviewer.access_token),
                ),
                200,
                201,
            )
            metadata = {
                "title": f"Arrêté municipal de démonstration ({self.tenant})",
                "circuit_id": CIRCUIT_ID,
                "metadata": {"document_type": "arrete", "retention": "P10Y"},
            }
            folder = self._expect(
                await api.post(
                    f"{self.urls.parapheur}/v1/folders",
                    files={"document": ("arrete.pdf", pdf, "application/pdf")},
                    data={"metadata": json.dumps(metadata)},
                    headers=self._headers(submitter.access_token),
                ),
                201,
            )
            folder_id = folder["id"]
            self.result.folder_id = folder_id
            self._step(f"folder {folder_id} submitted into circuit {CIRCUIT_ID}")

            self._expect(
                await api.post(
                    f"{self.urls.parapheur}/v1/folders/{folder_id}/steps/0/approve",
                    json={"comment": "Vu, bon pour signature."},
                    headers=self._headers(reviewer.access_token),
                ),
                200,
            )
            self._step(f"{cast['reviewer'].username} approved (visa)")

            sign_url = f"{self.urls.parapheur}/v1/folders/{folder_id}/steps/1/sign"
            refused = await api.post(
                sign_url, json={}, headers=self._headers(signatory.access_token)
            )
            if refused.status_code == 403 and "insufficient_user_authentication" in (
                refused.headers.get("www-authenticate", "")
            ):
                self._step("signature needs a substantial session: the signatory steps up")
                signatory = await browser_login(
                    signatory_browser,
                    issuer,
                    cast["signatory"].username,
                    DEMO_PASSWORD,
                    totp_secret=cast["signatory"].totp_secret,
                    acr=LOA_SUBSTANTIAL,
                )
                signed = self._expect(
                    await api.post(
                        sign_url,
                        json={"comment": "Signé."},
                        headers=self._headers(signatory.access_token),
                    ),
                    200,
                )
            else:
                signed = self._expect(refused, 200)
            self._step(f"{cast['signatory'].username} signed (PAdES)")
            self.result.folder_status = str(signed["status"])
            if signed["status"] != "signed":
                signed = await self._eventually(
                    "the commune's seal",
                    lambda: self._folder_if_signed(api, folder_id, submitter.access_token),
                )
            self.result.folder_status = "signed"
            self._step("the commune's seal was applied; folder signed")

            await self._download(api, folder_id, submitter.access_token)
            await self._archive(api, folder_id, archivist_browser, cast["archivist"])
            await self._notifications(cast)

    async def _folder_if_signed(
        self, api: httpx.AsyncClient, folder_id: str, token: str
    ) -> dict[str, Any] | None:
        folder = self._expect(
            await api.get(
                f"{self.urls.parapheur}/v1/folders/{folder_id}", headers=self._headers(token)
            ),
            200,
        )
        return folder if folder["status"] == "signed" else None

    async def _download(self, api: httpx.AsyncClient, folder_id: str, token: str) -> None:
        import hashlib

        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / f"{self.tenant}-{folder_id}.pdf"
        digest = hashlib.sha256()
        async with api.stream(
            "GET",
            f"{self.urls.parapheur}/v1/folders/{folder_id}/document",
            headers=self._headers(token),
        ) as response:
            if response.status_code != 200:
                raise JourneyFailed(f"download of the signed PDF answered {response.status_code}")
            with path.open("wb") as out:
                async for chunk in response.aiter_bytes():
                    digest.update(chunk)
                    out.write(chunk)
        self.result.signed_pdf = str(path)
        self.result.signed_pdf_sha256 = digest.hexdigest()
        self._step(f"signed PDF saved to {path}")

    async def _archive(
        self,
        api: httpx.AsyncClient,
        folder_id: str,
        browser: httpx.AsyncClient,
        archivist: Person,
    ) -> None:
        from archive.service_layer.handlers import parapheur_record_id

        tokens = await browser_login(browser, self.urls.identity, archivist.username, DEMO_PASSWORD)
        headers = self._headers(tokens.access_token)
        record_id = parapheur_record_id(self.tenant, folder_id)
        url = f"{self.urls.archive}/v1/archive/{self.tenant}/records/{record_id}"

        async def ingested() -> dict[str, Any] | None:
            response = await api.get(url, headers=headers)
            return response.json() if response.status_code == 200 else None

        record = await self._eventually("the archived record", ingested)
        self.result.record_id = record_id
        self.result.record_sha256 = str(record["content"]["sha256"])
        self._step(f"archive ingested record {record_id}")
        sealing = await api.post(
            f"{self.urls.archive}/v1/archive/{self.tenant}/seals", headers=headers
        )
        if sealing.status_code == 409 and "nothing_to_seal" in sealing.text:
            # Another archivist of this commune sealed just before us, our entry included.
            listing = await api.get(
                f"{self.urls.archive}/v1/archive/{self.tenant}/seals", headers=headers
            )
            self._expect(listing, 200)
            seal = listing.json()[-1]
        else:
            seal = self._expect(sealing, 200, 201)
        self.result.journal_seal = f"#{seal['number']} merkle root {seal['merkle_root'][:16]}…"
        verify = self._expect(
            await api.post(f"{self.urls.archive}/v1/archive/{self.tenant}/verify", headers=headers),
            200,
        )
        self.result.fixity_ok = bool(verify["ok"])
        self._step("archivist sealed the journal (RFC 3161) and verified the vault")

    async def _notifications(self, cast: dict[str, Person]) -> None:
        if self.urls.mail_dir is None:
            return
        from notifications.devsinks import list_mail

        wanted = {f"{p.username}@example.org" for p in cast.values()} - {
            f"{cast['archivist'].username}@example.org"
        }
        folder_id = self.result.folder_id

        async def delivered() -> list[dict[str, Any]] | None:
            mails = [
                m
                for m in list_mail(self.urls.mail_dir)  # type: ignore[arg-type]
                if folder_id in (m.get("text", "") + m.get("subject", ""))
                or folder_id in json.dumps(m.get("headers", {}))
            ]
            reached = {to for m in mails for to in m.get("to", [])}
            # Everyone involved: the reviewer and the signatory were told of their step, the
            # submitter of the signed folder.
            return mails if wanted <= reached else None

        try:
            mails = await self._eventually("notifications", delivered)
        except JourneyFailed:
            everything = list_mail(self.urls.mail_dir)
            seen = sorted({to for m in everything for to in m.get("to", [])})
            raise JourneyFailed(
                f"notifications: {sorted(wanted)} not all told of folder {folder_id} within "
                f"{self.timeout_s:.0f}s; {len(everything)} mail(s) in the sink, to {seen}: "
                + "; ".join(f"{m.get('to')} {m.get('subject')!r}" for m in everything[-12:])
            ) from None
        self.result.notifications = [
            {"to": m.get("to"), "subject": m.get("subject")} for m in mails
        ]
        self._step(f"{len(mails)} email(s) delivered to the people involved")


def summary_lines(result: JourneyResult) -> Sequence[str]:
    return [
        f"tenant          {result.tenant}",
        f"folder          {result.folder_id} ({result.folder_status})",
        f"signed PDF      {result.signed_pdf}",
        f"archive record  {result.record_id} sha256={result.record_sha256[:16]}… "
        f"fixity {'ok' if result.fixity_ok else 'NOT OK'}",
        f"journal seal    {result.journal_seal}",
        f"notifications   {len(result.notifications)} email(s)",
        f"trace id        {result.trace_id}",
        f"took            {result.seconds:.1f}s",
    ]
