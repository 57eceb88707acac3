"""Folders through the API: refusals, walls between tenants, races, restarts, deadlines and
erasure, against the real cluster."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from nats.js.errors import NotFoundError

from identity.domain.events import UserErased
from mutualis_kernel.runner import open_platform
from mutualis_kernel.runtime import LocalCluster
from mutualis_kernel.testing.issuer import TestIssuer
from mutualis_kernel.testing.span_capture import SpanCapture
from mutualis_trust.testing import encrypted_pdf
from parapheur.adapters.repository import JetStreamFolders
from parapheur.bootstrap import wire
from parapheur.domain import errors
from parapheur.domain.model import Agent
from parapheur.manifest import MANIFEST
from parapheur.service_layer.ports import DocumentSigner
from parapheur.service_layer.projection import pseudonym

from .conftest import (
    ARRETE,
    MAX_DOCUMENT_BYTES,
    VISA_ONLY,
    Parapheur,
    eventually,
    running_parapheur,
    settings_for,
)


async def stored_objects(parapheur: Parapheur) -> set[str]:
    store = await parapheur.platform.js.object_store("parapheur_documents")
    try:
        return {info.name for info in await store.list()}
    except NotFoundError:
        return set()


async def test_a_rejection_returns_the_folder_and_closes_it(parapheur: Parapheur) -> None:
    sam = parapheur.agent("sam")
    alice = parapheur.agent("alice", "bordeaux", "desk:secretariat")
    folder = (await parapheur.submit(sam)).json()["id"]

    refused = await parapheur.act(folder, 0, "reject", alice, "pièce manquante")
    assert refused.status_code == 200, refused.text
    assert refused.json()["status"] == "rejected"
    assert (await parapheur.history(folder))[-2:] == ["step.rejected", "folder.rejected"]

    again = await parapheur.act(folder, 0, "approve", alice)
    assert again.status_code == 409
    assert again.json()["error"] == "folder_closed"


async def test_the_submitter_takes_back_an_untouched_folder_and_no_one_acts_on_it_after(
    parapheur: Parapheur,
) -> None:
    sam = parapheur.agent("sam")
    alice = parapheur.agent("alice", "bordeaux", "desk:secretariat")
    folder = (await parapheur.submit(sam)).json()["id"]

    not_theirs = await parapheur.http.post(f"/v1/folders/{folder}/take-back", headers=alice)
    assert not_theirs.status_code == 409
    assert not_theirs.json()["error"] == "take_back_refused"

    taken = await parapheur.http.post(
        f"/v1/folders/{folder}/take-back", json={"reason": "oubli"}, headers=sam
    )
    assert taken.json()["status"] == "withdrawn"
    late = await parapheur.act(folder, 0, "approve", alice)
    assert (late.status_code, late.json()["error"]) == (409, "folder_closed")
    assert (await parapheur.history(folder))[-1] == "folder.withdrawn"


async def test_take_back_is_too_late_once_the_step_moved_on_and_was_acted_on(
    parapheur: Parapheur,
) -> None:
    sam = parapheur.agent("sam")
    alice = parapheur.agent("alice", "bordeaux", "desk:secretariat")
    bob = parapheur.agent("bob", "bordeaux")
    folder = (await parapheur.submit(sam)).json()["id"]
    await parapheur.act(folder, 0, "approve", alice)
    refused = await parapheur.act(folder, 1, "reject", bob, "non")
    assert refused.json()["status"] == "rejected"
    late = await parapheur.http.post(f"/v1/folders/{folder}/take-back", headers=sam)
    assert late.status_code == 409


async def test_steps_out_of_order_acting_twice_and_outsiders_are_refused_without_change(
    parapheur: Parapheur,
) -> None:
    sam = parapheur.agent("sam")
    alice = parapheur.agent("alice", "bordeaux", "desk:secretariat")
    bob = parapheur.agent("bob", "bordeaux", substantial=True)
    folder = (await parapheur.submit(sam)).json()["id"]

    early = await parapheur.act(folder, 1, "sign", bob)
    assert (early.status_code, early.json()["error"]) == (409, "step_not_current")
    outsider = await parapheur.act(folder, 0, "approve", parapheur.agent("eve"))
    assert (outsider.status_code, outsider.json()["error"]) == (403, "not_an_actor")
    await parapheur.act(folder, 0, "approve", alice)
    twice = await parapheur.act(folder, 0, "approve", alice)
    assert (twice.status_code, twice.json()["error"]) == (409, "already_acted")
    wrong = await parapheur.act(folder, 1, "approve", bob)
    assert (wrong.status_code, wrong.json()["error"]) == (409, "wrong_action")
    assert len(await parapheur.history(folder)) == 4


async def test_signing_without_a_substantial_session_asks_for_step_up(
    parapheur: Parapheur,
) -> None:
    sam = parapheur.agent("sam")
    folder = (await parapheur.submit(sam)).json()["id"]
    await parapheur.act(
        folder, 0, "approve", parapheur.agent("alice", "bordeaux", "desk:secretariat")
    )
    low = await parapheur.act(folder, 1, "sign", parapheur.agent("bob"))
    assert low.status_code == 403
    assert low.json()["error"] == "insufficient_user_authentication"
    assert "acr_values" in low.headers["www-authenticate"]


async def test_two_actors_at_the_same_moment_one_wins_the_other_gets_409(
    parapheur: Parapheur,
) -> None:
    sam = parapheur.agent("sam")
    folder = (await parapheur.submit(sam, circuit_id="note")).json()["id"]
    alice = parapheur.agent("alice", "bordeaux", "desk:secretariat")
    dave = parapheur.agent("dave", "bordeaux")
    first, second = await asyncio.gather(
        parapheur.act(folder, 0, "approve", alice), parapheur.act(folder, 0, "approve", dave)
    )
    assert sorted([first.status_code, second.status_code]) == [200, 409]
    assert (await parapheur.history(folder)).count("step.approved") == 1


async def test_a_decision_on_a_stale_version_is_a_concurrent_action(
    parapheur: Parapheur,
) -> None:
    folder = (await parapheur.submit(parapheur.agent("sam"), circuit_id="note")).json()["id"]
    repository = JetStreamFolders(parapheur.platform.store, parapheur.platform.publisher)
    one = await repository.load("bordeaux", folder)
    other = await repository.load("bordeaux", folder)
    now = datetime.now(UTC)
    one.folder.approve(0, Agent("alice", frozenset({"secretariat"})), [], "", now)
    other.folder.approve(0, Agent("dave"), [], "", now)
    await repository.save(one)
    with pytest.raises(errors.ConcurrentAction):
        await repository.save(other)


async def test_another_tenants_agent_sees_and_touches_nothing(parapheur: Parapheur) -> None:
    folder = (await parapheur.submit(parapheur.agent("sam"))).json()["id"]
    stranger = parapheur.agent("alice", "merignac", "desk:secretariat")
    for path in ("", "/document", "/history", "/proof", "/proof.html", "/attachments/0"):
        response = await parapheur.http.get(f"/v1/folders/{folder}{path}", headers=stranger)
        assert response.status_code == 404, path
        assert "arrete" not in response.text.lower()
    acted = await parapheur.act(folder, 0, "approve", stranger)
    assert acted.status_code == 404
    tasks = (await parapheur.http.get("/v1/tasks", headers=stranger)).json()
    assert folder not in [t["id"] for t in tasks["items"]]
    circuits = (await parapheur.http.get("/v1/circuits", headers=stranger)).json()
    assert circuits == []
    assert (await parapheur.history(folder)) == ["folder.submitted", "step.assigned"]


async def test_an_application_submits_with_a_client_credentials_token(
    parapheur: Parapheur,
) -> None:
    application = parapheur.issuer.bearer("svc-ged", "bordeaux", kind="service", roles=())
    submitted = await parapheur.submit(application)
    assert submitted.status_code == 201, submitted.text
    assert submitted.json()["submitted_by"] == "svc-ged"
    attachment = await parapheur.http.get(
        f"/v1/folders/{submitted.json()['id']}/attachments/0", headers=application
    )
    assert attachment.content == b"annexe"


@pytest.mark.parametrize(
    ("pdf", "status", "code"),
    [
        (b"hello, not a pdf", 422, "invalid_document"),
        (encrypted_pdf(), 422, "invalid_document"),
        (b"%PDF-1.7\n1 0 obj <<\n%%EOF", 422, "invalid_document"),
        (b"%PDF-1.7\n" + b"0" * MAX_DOCUMENT_BYTES, 413, "document_too_large"),
        (b"", 422, "invalid_document"),
    ],
    ids=["not-a-pdf", "encrypted", "malformed", "oversized", "empty"],
)
async def test_bad_uploads_are_refused_and_nothing_is_stored(
    parapheur: Parapheur, pdf: bytes, status: int, code: str
) -> None:
    before = await stored_objects(parapheur)
    response = await parapheur.submit(parapheur.agent("sam"), pdf=pdf)
    assert response.status_code == status, response.text
    assert response.json()["error"] == code
    assert response.json()["detail"]
    assert await stored_objects(parapheur) == before


async def test_an_unknown_circuit_is_refused_and_nothing_is_stored(parapheur: Parapheur) -> None:
    before = await stored_objects(parapheur)
    response = await parapheur.submit(parapheur.agent("sam"), circuit_id="nope")
    assert (response.status_code, response.json()["error"]) == (404, "unknown_circuit")
    assert await stored_objects(parapheur) == before


async def test_circuit_types_are_managed_by_tenant_admins_only(parapheur: Parapheur) -> None:
    agent = parapheur.agent("sam")
    refused = await parapheur.http.put("/v1/circuits/arrete", json=ARRETE, headers=agent)
    assert refused.status_code == 403
    bad = {**VISA_ONLY, "id": "bad", "steps": [{"kind": "visa", "actors": []}]}
    invalid = await parapheur.http.post("/v1/circuits", json=bad, headers=parapheur.admin())
    assert (invalid.status_code, invalid.json()["error"]) == (422, "invalid_circuit")
    listed = (await parapheur.http.get("/v1/circuits", headers=agent)).json()
    assert {c["id"] for c in listed} >= {"arrete", "note"}


async def test_a_restart_mid_circuit_loses_nothing(
    nats_cluster: LocalCluster, issuer: TestIssuer, signer: DocumentSigner, tmp_path: Path
) -> None:
    async with running_parapheur(nats_cluster, issuer, signer, tmp_path) as first:
        await first.circuit(ARRETE)
        folder = (await first.submit(first.agent("sam"))).json()["id"]
        await first.act(folder, 0, "approve", first.agent("alice", "bordeaux", "desk:secretariat"))
        # The stream's last event is then not a folder event: readiness must still come.
        now = datetime.now(UTC)
        await first.http.post(
            "/v1/delegations",
            json={
                "delegate": "carol",
                "starts_at": now.isoformat(),
                "ends_at": (now + timedelta(days=1)).isoformat(),
            },
            headers=first.agent("dave"),
        )
    async with running_parapheur(nats_cluster, issuer, signer, tmp_path) as second:
        bob = second.agent("bob", "bordeaux", substantial=True)

        async def ready() -> bool:
            return (await second.http.get("/readyz")).status_code == 200

        await eventually(ready)
        # Ready means the task board has replayed the stream: bob's task is there at once.
        tasks = (await second.http.get("/v1/tasks", headers=bob)).json()
        assert folder in [t["id"] for t in tasks["items"]]
        signed = await second.act(folder, 1, "sign", bob)
        assert signed.json()["status"] == "signed", signed.text


async def test_an_instance_is_not_ready_until_its_task_board_has_replayed_the_stream(
    nats_cluster: LocalCluster, issuer: TestIssuer, signer: DocumentSigner, tmp_path: Path
) -> None:
    platform = await open_platform(settings_for(nats_cluster, tmp_path), MANIFEST)
    stop = asyncio.Event()
    try:
        wiring = await wire(platform, signer=signer, verifier=issuer.verifier("mutualis:parapheur"))
        transport = httpx.ASGITransport(app=wiring.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://parapheur") as http:
            # Nothing replays the stream yet (the loops are not started): not ready.
            before = await http.get("/readyz")
            assert before.status_code == 503, before.text
            assert before.json()["checks"]["nats"] == "ok"
            assert before.json()["checks"]["tasks"] != "ok"
            loops = [asyncio.create_task(loop(stop)) for loop in wiring.background]

            async def ready() -> bool:
                return (await http.get("/readyz")).status_code == 200

            await eventually(ready)
            stop.set()
            await asyncio.wait_for(asyncio.gather(*loops), 20)
    finally:
        stop.set()
        await platform.nc.drain()


async def test_reminder_then_overdue_fire_through_nats_schedules(parapheur: Parapheur) -> None:
    capture = SpanCapture()
    due = datetime.now(UTC) + timedelta(seconds=4)
    folder = (await parapheur.submit(parapheur.agent("sam"), due_at=due.isoformat())).json()["id"]
    submission = next(s for s in capture.spans if s.name.startswith("send parapheur.folder"))

    async def overdue() -> bool:
        return "folder.overdue" in await parapheur.history(folder)

    await eventually(overdue, timeout=60)
    history = await parapheur.history(folder)
    assert history.index("reminder.due") < history.index("folder.overdue")
    # Each deadline is a trace of its own, linked to the folder's submission.
    reminder = next(s for s in capture.spans if s.name == "parapheur.deadline reminder")
    assert reminder.context.trace_id != submission.context.trace_id
    assert [link.context.trace_id for link in reminder.links] == [submission.context.trace_id]
    alice = parapheur.agent("alice", "bordeaux", "desk:secretariat")

    async def flagged() -> bool:
        tasks = (await parapheur.http.get("/v1/tasks?overdue=true", headers=alice)).json()
        return folder in [t["id"] for t in tasks["items"]]

    await eventually(flagged)


async def erase(parapheur: Parapheur, user_id: str, tenant: str = "bordeaux") -> None:
    """What identity publishes when a person's account is erased."""
    await parapheur.platform.publisher.publish(
        UserErased(user_id=user_id, tenant=tenant, kind="agent"),
        tenant=tenant,
        aggregate_id=user_id,
    )


async def test_an_erased_person_is_shown_under_a_pseudonym_and_the_record_stays(
    parapheur: Parapheur,
) -> None:
    zoe = f"zoe-{uuid.uuid4().hex[:8]}"
    folder = (await parapheur.submit(parapheur.agent(zoe))).json()["id"]
    await erase(parapheur, zoe)
    reader = parapheur.agent("reader")

    async def pseudonymised() -> bool:
        view = (await parapheur.http.get(f"/v1/folders/{folder}", headers=reader)).json()
        return str(view["submitted_by"]).startswith("erased-")

    await eventually(pseudonymised)
    proof = (await parapheur.http.get(f"/v1/folders/{folder}/proof", headers=reader)).json()
    assert zoe not in str(proof)
    history = (await parapheur.http.get(f"/v1/folders/{folder}/history", headers=reader)).json()
    assert history[0]["data"]["submitted_by"] == pseudonym(zoe)
    assert zoe not in str(history)
    # The record itself is untouched: only the views pseudonymise.
    stored = await JetStreamFolders(parapheur.platform.store, parapheur.platform.publisher).history(
        "bordeaux", folder
    )
    assert getattr(stored[0].data, "submitted_by") == zoe  # noqa: B009


async def test_every_instance_pseudonymises_an_erasure_that_one_of_them_handled(
    nats_cluster: LocalCluster, issuer: TestIssuer, signer: DocumentSigner, tmp_path: Path
) -> None:
    # The `user.erased` consumer is a durable shared by the instances: one of them handles
    # the event, and both must stop showing the person.
    zoe = f"zoe-{uuid.uuid4().hex[:8]}"
    async with (
        running_parapheur(nats_cluster, issuer, signer, tmp_path / "one") as one,
        running_parapheur(nats_cluster, issuer, signer, tmp_path / "two") as two,
    ):
        await one.circuit(VISA_ONLY)
        folder = (await one.submit(one.agent(zoe), circuit_id="note")).json()["id"]
        await erase(one, zoe)
        for instance in (one, two):
            reader = instance.agent("reader")

            async def pseudonymised(instance: Parapheur = instance) -> bool:
                view = await instance.http.get(
                    f"/v1/folders/{folder}", headers=instance.agent("reader")
                )
                tasks = await instance.http.get("/v1/tasks", headers=instance.agent("dave"))
                shown = [t["submitted_by"] for t in tasks.json()["items"] if t["id"] == folder]
                return bool(
                    view.json()["submitted_by"] == pseudonym(zoe) and shown == [pseudonym(zoe)]
                )

            await eventually(pseudonymised)
            history = await instance.http.get(f"/v1/folders/{folder}/history", headers=reader)
            assert zoe not in history.text


async def test_a_draft_is_stored_then_submitted_by_its_author(parapheur: Parapheur) -> None:
    sam = parapheur.agent("sam")
    drafted = await parapheur.submit(sam, draft=True)
    assert drafted.status_code == 201, drafted.text
    folder = drafted.json()["id"]
    assert drafted.json()["status"] == "draft"
    alice = parapheur.agent("alice", "bordeaux", "desk:secretariat")
    early = await parapheur.act(folder, 0, "approve", alice)
    assert (early.status_code, early.json()["error"]) == (409, "not_submitted")
    other = await parapheur.http.post(f"/v1/folders/{folder}/submit", headers=alice)
    assert other.status_code == 403
    submitted = await parapheur.http.post(f"/v1/folders/{folder}/submit", headers=sam)
    assert submitted.json()["status"] == "in_progress", submitted.text
    assert (await parapheur.act(folder, 0, "approve", alice)).status_code == 200


async def test_a_retried_submission_with_the_same_idempotency_key_gives_the_same_folder(
    parapheur: Parapheur,
) -> None:
    application = {
        **parapheur.issuer.bearer("svc-ged", "bordeaux", kind="service", roles=()),
        "Idempotency-Key": "ged-2026-0042",
    }
    first = await parapheur.submit(application)
    before = await stored_objects(parapheur)
    again = await parapheur.submit(application)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    assert await stored_objects(parapheur) == before
    racing = {**application, "Idempotency-Key": "ged-2026-0043"}
    one, two = await asyncio.gather(parapheur.submit(racing), parapheur.submit(racing))
    assert one.json()["id"] == two.json()["id"]
    document = await parapheur.http.get(
        f"/v1/folders/{one.json()['id']}/document", headers=application
    )
    assert document.status_code == 200
    assert document.content.startswith(b"%PDF-")
