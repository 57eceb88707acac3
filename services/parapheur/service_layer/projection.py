"""The task board: every open folder, who it waits for, queried per user and desk.

Kept in memory by each instance and rebuilt at start from PARAPHEUR_EVENTS by an ordered,
ephemeral consumer (see `adapters/feed.py`). Why memory rather than KV: every instance must
answer "my tasks" with filters and paging, which a KV cannot index; the whole board of all
communes is small (a folder is a few hundred bytes) and replaying the stream at start takes
well under a second per hundred thousand events, so a shared store would add a write path and
nothing else. Each instance also applies its own saves at once (`update`), so its users see
their action reflected without waiting for the feed; the per-folder version keeps the two
paths from going backwards.

Erased people (identity's `user.erased`) are shown under a pseudonym in every view built here
(folder state, tasks, and through `pseudonymised` the history and the proof report); the
events, the signatures in the PDFs and the stored history are not touched.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mutualis_kernel.events import Event
from parapheur.domain.model import Agent, Delegation, Folder


def _digest(user_id: str) -> str:
    return hashlib.sha256(user_id.encode()).hexdigest()


def pseudonym(user_id: str) -> str:
    """A stable stand-in for an erased person: the same in every view, not reversible."""
    return "erased-" + _digest(user_id)[:12]


@dataclass(frozen=True)
class TaskFilter:
    circuit_id: str | None = None
    step_kind: str | None = None
    overdue: bool | None = None
    limit: int = 50
    offset: int = 0


class TaskBoard:
    def __init__(self) -> None:
        self._folders: dict[tuple[str, str], Folder] = {}
        self._versions: dict[tuple[str, str], int] = {}
        self._erased: set[tuple[str, str]] = set()
        self.caught_up = False

    # -- feeding --------------------------------------------------------------------------
    def apply(self, tenant: str, folder_id: str, event: Event, sequence: int) -> None:
        key = (tenant, folder_id)
        if sequence <= self._versions.get(key, 0):
            return
        folder = self._folders.setdefault(key, Folder(folder_id, tenant))
        folder.apply(event)
        self._versions[key] = sequence

    def update(self, folder: Folder, version: int) -> None:
        key = (folder.tenant, folder.id)
        if version <= self._versions.get(key, 0):
            return
        snapshot = copy.deepcopy(folder)
        snapshot.pending = []
        self._folders[key] = snapshot
        self._versions[key] = version

    def erase(self, tenant: str, user_id: str) -> None:
        self._erased.add((tenant, _digest(user_id)))

    def erase_digest(self, tenant: str, digest: str) -> None:
        self._erased.add((tenant, digest))

    # -- reading --------------------------------------------------------------------------
    def is_erased(self, tenant: str, user_id: str) -> bool:
        return (tenant, _digest(user_id)) in self._erased

    def shown(self, tenant: str, user_id: str) -> str:
        return pseudonym(user_id) if self.is_erased(tenant, user_id) else user_id

    def pseudonymised(self, tenant: str, value: Any) -> Any:
        """`value` (JSON data, e.g. an event's payload) with every erased person replaced by
        their pseudonym.

        Every string is checked rather than a list of fields, so that a field added to an event
        later cannot leak an id: a string that merely equals an erased id (a title "zoe") is
        pseudonymised too, which hides nothing anyone needs. A signature of an erased person
        also loses its certificate subject, which names them.
        """
        if not self._erased:
            return value
        if isinstance(value, str):
            # A step's slot names its actor as `user:<id>` (`ActorRef.key`).
            kind, colon, ident = value.partition(":")
            if colon and kind == "user" and self.is_erased(tenant, ident):
                return f"user:{pseudonym(ident)}"
            return self.shown(tenant, value)
        if isinstance(value, list | tuple):
            return [self.pseudonymised(tenant, item) for item in value]
        if isinstance(value, dict):
            shown = {key: self.pseudonymised(tenant, item) for key, item in value.items()}
            signer = value.get("signer")
            if (
                isinstance(signer, str)
                and "certificate_subject" in value
                and self.is_erased(tenant, signer)
            ):
                shown["certificate_subject"] = pseudonym(signer)
            return shown
        return value

    def view(self, tenant: str, folder_id: str) -> dict[str, object] | None:
        folder = self._folders.get((tenant, folder_id))
        if folder is None or not folder.exists:
            return None
        return self.describe(folder)

    def describe(self, folder: Folder, version: int | None = None) -> dict[str, object]:
        users, desks = folder.waiting_for()
        step = folder.step_spec(folder.current_step)
        return {
            "id": folder.id,
            "tenant": folder.tenant,
            "title": folder.title,
            "status": folder.status,
            "circuit_id": folder.circuit.id if folder.circuit else None,
            "circuit_name": folder.circuit.name if folder.circuit else None,
            "current_step": folder.current_step if step else None,
            "step_kind": step.kind if step and not folder.is_closed else None,
            "waiting_for_users": [self.shown(folder.tenant, u) for u in users],
            "waiting_for_desks": list(desks),
            "due_at": folder.due_at.isoformat() if folder.due_at else None,
            "overdue": folder.overdue,
            "submitted_by": self.shown(folder.tenant, folder.submitted_by),
            "submitted_at": folder.submitted_at.isoformat() if folder.submitted_at else None,
            "version": version or self._versions.get((folder.tenant, folder.id), 0),
        }

    def tasks(
        self,
        tenant: str,
        agent: Agent,
        delegations: Iterable[Delegation],
        now: datetime,
        wanted: TaskFilter,
    ) -> tuple[int, list[dict[str, object]]]:
        """Folders of `tenant` whose current step waits for the agent or someone they stand in
        for; the total and one page."""
        stand_in = [d for d in delegations if d.delegate == agent.user_id and d.active(now)]
        users = {agent.user_id} | {d.delegator for d in stand_in}
        desks = set(agent.desks).union(*(d.desks for d in stand_in))
        found: list[Folder] = []
        for (folder_tenant, _), folder in self._folders.items():
            if folder_tenant != tenant or folder.status != "in_progress":
                continue
            waiting_users, waiting_desks = folder.waiting_for()
            if not (users.intersection(waiting_users) or desks.intersection(waiting_desks)):
                continue
            step = folder.step_spec(folder.current_step)
            if wanted.circuit_id and (
                folder.circuit is None or folder.circuit.id != wanted.circuit_id
            ):
                continue
            if wanted.step_kind and (step is None or step.kind != wanted.step_kind):
                continue
            if wanted.overdue is not None and folder.overdue != wanted.overdue:
                continue
            found.append(folder)
        found.sort(key=lambda f: (f.due_at is None, f.due_at or now, f.submitted_at or now))
        page = found[wanted.offset : wanted.offset + wanted.limit]
        return len(found), [self.describe(f) for f in page]
