"""A commune's working day, end to end, as its agents live it (through the public APIs)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx

from mutualis_cli.journey.login import browser_login
from mutualis_cli.journey.scenario import DEMO_PASSWORD, Journey, JourneyResult
from mutualis_trust.pades import pdfsig_verify
from mutualis_trust.testing import minimal_pdf, require_pdfsig

from .conftest import RunningPlatform


async def journey(platform: RunningPlatform, tenant: str, out: Path) -> JourneyResult:
    return await Journey(platform.urls, tenant, out_dir=out).run(minimal_pdf(f"Arrêté {tenant}"))


async def test_two_communes_work_at_once_and_nothing_leaks_between_them(
    running_platform: RunningPlatform, tmp_path: Path
) -> None:
    bordeaux, merignac = await asyncio.gather(
        journey(running_platform, "bordeaux", tmp_path),
        journey(running_platform, "merignac", tmp_path),
    )

    for result in (bordeaux, merignac):
        assert result.folder_status == "signed"
        assert result.record_sha256 == result.signed_pdf_sha256
        assert result.fixity_ok
        # The reviewer and the signatory were told of their step, the submitter of the end.
        told = {to for n in result.notifications for to in n["to"]}
        for person in ("agent", "admin", "signataire"):
            assert f"{person}.{result.tenant}@example.org" in told, told

    urls = running_platform.urls
    async with httpx.AsyncClient(timeout=30) as browser, httpx.AsyncClient(timeout=30) as api:
        intruder = await browser_login(browser, urls.identity, "agent.bordeaux", DEMO_PASSWORD)
        headers = {"Authorization": f"Bearer {intruder.access_token}"}
        folder = await api.get(f"{urls.parapheur}/v1/folders/{merignac.folder_id}", headers=headers)
        assert folder.status_code == 404
        assert "merignac" not in folder.text  # not found, and nothing of the folder shown
        record = await api.get(
            f"{urls.archive}/v1/archive/merignac/records/{merignac.record_id}", headers=headers
        )
        assert record.status_code == 403
        own_tenant_view = await api.get(
            f"{urls.archive}/v1/archive/bordeaux/records/{merignac.record_id}", headers=headers
        )
        assert own_tenant_view.status_code == 404
    mails_to_bordeaux = [n for n in bordeaux.notifications for to in n["to"] if "merignac" in to]
    assert mails_to_bordeaux == []
    # Last, so that a machine without pdfsig still runs every other check before skipping.
    require_pdfsig()
    ca = running_platform.run_dir / "pki" / "ca.pem"
    report = pdfsig_verify(Path(bordeaux.signed_pdf), ca)
    assert report.all_valid_and_trusted, report.output
    assert len(report.signatures) == 2  # the signatory's, then the commune's seal


async def submit(api: httpx.AsyncClient, platform: RunningPlatform, token: str, tenant: str) -> str:
    # The circuit was defined by the journeys above; a fresh module defines it through one.
    response = await api.post(
        f"{platform.urls.parapheur}/v1/folders",
        files={"document": ("a.pdf", minimal_pdf("rejet"), "application/pdf")},
        data={"metadata": json.dumps({"title": "Marché à revoir", "circuit_id": "demo-arrete"})},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def test_a_rejected_folder_returns_to_its_submitter_and_is_not_archived(
    running_platform: RunningPlatform, tmp_path: Path
) -> None:
    await journey(running_platform, "pessac", tmp_path)  # defines pessac's circuit
    urls = running_platform.urls
    async with (
        httpx.AsyncClient(timeout=30) as submitter_browser,
        httpx.AsyncClient(timeout=30) as reviewer_browser,
        httpx.AsyncClient(timeout=30) as api,
    ):
        submitter = await browser_login(
            submitter_browser, urls.identity, "agent.pessac", DEMO_PASSWORD
        )
        reviewer = await browser_login(
            reviewer_browser, urls.identity, "admin.pessac", DEMO_PASSWORD
        )
        folder = await submit(api, running_platform, submitter.access_token, "pessac")
        rejected = await api.post(
            f"{urls.parapheur}/v1/folders/{folder}/steps/0/reject",
            json={"comment": "Montant à revoir."},
            headers={"Authorization": f"Bearer {reviewer.access_token}"},
        )
        assert rejected.status_code == 200, rejected.text
        assert rejected.json()["status"] == "rejected"

        from notifications.devsinks import list_mail

        assert running_platform.urls.mail_dir is not None
        for _ in range(100):
            told = [
                m
                for m in list_mail(running_platform.urls.mail_dir)
                if "agent.pessac@example.org" in m["to"] and "Montant à revoir" in m["text"]
            ]
            if told:
                break
            await asyncio.sleep(0.2)
        assert told, "the submitter was not told why"

        again = await api.post(
            f"{urls.parapheur}/v1/folders/{folder}/steps/0/approve",
            json={},
            headers={"Authorization": f"Bearer {reviewer.access_token}"},
        )
        assert again.status_code in (409, 422)
        # Rejected: nothing of it reaches the vault (the submitter was told above, so the
        # events were routed; the archive ingests on folder.completed only).
        assert await archived_titled(running_platform, "pessac", "Marché à revoir") == []


async def archived_titled(platform: RunningPlatform, tenant: str, title: str) -> list[object]:
    async with httpx.AsyncClient(timeout=30) as browser, httpx.AsyncClient(timeout=30) as api:
        archivist = await browser_login(
            browser, platform.urls.identity, f"archiviste.{tenant}", DEMO_PASSWORD
        )
        found = await api.get(
            f"{platform.urls.archive}/v1/archive/{tenant}/records",
            params={"title": title},
            headers={"Authorization": f"Bearer {archivist.access_token}"},
        )
    assert found.status_code == 200, found.text
    return list(found.json())


async def test_the_submitter_takes_a_folder_back_before_anyone_acts(
    running_platform: RunningPlatform, tmp_path: Path
) -> None:
    await journey(running_platform, "talence", tmp_path)
    urls = running_platform.urls
    async with httpx.AsyncClient(timeout=30) as browser, httpx.AsyncClient(timeout=30) as api:
        submitter = await browser_login(browser, urls.identity, "agent.talence", DEMO_PASSWORD)
        folder = await submit(api, running_platform, submitter.access_token, "talence")
        taken = await api.post(
            f"{urls.parapheur}/v1/folders/{folder}/take-back",
            json={"reason": "Pièce manquante."},
            headers={"Authorization": f"Bearer {submitter.access_token}"},
        )
        assert taken.status_code == 200, taken.text
        assert taken.json()["status"] == "withdrawn"
        # Nobody can act on it any more, and the reviewer's desk no longer lists it.
        async with httpx.AsyncClient(timeout=30) as reviewer_browser:
            reviewer = await browser_login(
                reviewer_browser, urls.identity, "admin.talence", DEMO_PASSWORD
            )
        headers = {"Authorization": f"Bearer {reviewer.access_token}"}
        late = await api.post(
            f"{urls.parapheur}/v1/folders/{folder}/steps/0/approve", json={}, headers=headers
        )
        assert late.status_code in (409, 422)
        tasks = await api.get(f"{urls.parapheur}/v1/tasks", headers=headers)
        assert tasks.status_code == 200, tasks.text
        assert folder not in tasks.text
    assert await archived_titled(running_platform, "talence", "Marché à revoir") == []


async def test_the_journey_survives_a_service_restarted_in_the_middle(
    running_platform: RunningPlatform, tmp_path: Path
) -> None:
    restarted = asyncio.Event()

    def restart_parapheur_once(step: str) -> None:
        if "approved" in step and not restarted.is_set():
            restarted.set()
            running_platform.cli("restart", "parapheur@dc1", "--kill")

    result = await Journey(
        running_platform.urls, "begles", out_dir=tmp_path, on_step=restart_parapheur_once
    ).run(minimal_pdf("Arrêté de Bègles"))

    assert restarted.is_set()
    assert result.folder_status == "signed"
    assert result.record_sha256 == result.signed_pdf_sha256


def test_mutualis_demo_runs_a_working_day_and_says_what_it_did(
    running_platform: RunningPlatform,
) -> None:
    done = running_platform.cli("demo", "--tenant", "le-bouscat", "--json")
    summary = json.loads(done.stdout)
    assert summary["failed"] == []
    [day] = summary["journeys"]
    assert day["tenant"] == "le-bouscat"
    assert day["folder_status"] == "signed"
    assert Path(day["signed_pdf"]).is_file()
    assert day["record_id"]
    assert day["record_sha256"] == day["signed_pdf_sha256"]
    assert day["fixity_ok"] is True
    assert day["journal_seal"]
    assert len(day["trace_id"]) == 32
    told = {to for n in day["notifications"] for to in n["to"]}
    assert "agent.le-bouscat@example.org" in told
