"""Property: no sequence of commands, allowed or refused, brings a folder to an invalid state."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from parapheur.domain import errors
from parapheur.domain.events import ActorRef, CircuitSpec, StepSpec
from parapheur.domain.model import TERMINAL, Agent, Delegation, Folder

from .builders import NOW, doc, signature

PEOPLE = ("alice", "bob", "carol", "sam")
DESKS = ("secretariat", "direction")

actors = st.one_of(
    st.builds(ActorRef, kind=st.just("user"), id=st.sampled_from(PEOPLE)),
    st.builds(ActorRef, kind=st.just("desk"), id=st.sampled_from(DESKS)),
)
human_steps = st.builds(
    StepSpec,
    kind=st.sampled_from(["visa", "signature"]),
    actors=st.lists(actors, min_size=1, max_size=3, unique_by=lambda a: a.key).map(tuple),
    mode=st.sampled_from(["any", "all"]),
)
steps = st.one_of(human_steps, st.just(StepSpec(kind="seal")))
circuits = st.lists(steps, min_size=1, max_size=4).map(
    lambda s: CircuitSpec(id="c", name="C", steps=tuple(s))
)
agents = st.builds(
    Agent,
    user_id=st.sampled_from(PEOPLE),
    desks=st.frozensets(st.sampled_from(DESKS), max_size=2),
    substantial=st.booleans(),
)


class FolderLifecycle(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.folder = Folder("f", "bordeaux")
        self.delegations: list[Delegation] = []
        self.events: list[object] = []
        self.terminal_seen: str | None = None
        self.clock = NOW
        self.version = 0

    @initialize(spec=circuits, due=st.booleans())
    def submit(self, spec: CircuitSpec, due: bool) -> None:
        self.folder.submit(
            title="t",
            circuit=spec,
            document=doc(),
            attachments=(),
            metadata={},
            submitted_by="sam",
            submitter_kind="agent",
            due_at=NOW + timedelta(days=1) if due else None,
            now=NOW,
        )
        self._collect()

    def _collect(self) -> None:
        self.events.extend(self.folder.collect())

    def _attempt(self, command: object) -> None:
        before = (self.folder.status, self.folder.current_step, len(self.folder.actions))
        try:
            command()  # type: ignore[operator]
        except errors.ParapheurError:
            # A refused command records nothing and changes nothing.
            assert not self.folder.pending
            after = (self.folder.status, self.folder.current_step, len(self.folder.actions))
            assert after == before
        self._collect()

    @rule(agent=agents, step=st.integers(0, 4), comment=st.text(max_size=5))
    def approve(self, agent: Agent, step: int, comment: str) -> None:
        self._attempt(
            lambda: self.folder.approve(step, agent, self.delegations, comment, self.clock)
        )

    @rule(agent=agents, step=st.integers(0, 4))
    def sign(self, agent: Agent, step: int) -> None:
        self.version += 1
        self._attempt(
            lambda: self.folder.sign(
                step,
                agent,
                self.delegations,
                "",
                doc(self.version),
                signature(step, agent.user_id),
                self.clock,
            )
        )

    @rule(step=st.integers(0, 4))
    def seal(self, step: int) -> None:
        self.version += 1
        self._attempt(
            lambda: self.folder.seal(
                step, doc(self.version), signature(step, "seal", "seal"), self.clock
            )
        )

    @rule(agent=agents, step=st.integers(0, 4), reason=st.sampled_from(["", "non"]))
    def reject(self, agent: Agent, step: int, reason: str) -> None:
        self._attempt(lambda: self.folder.reject(step, agent, self.delegations, reason, self.clock))

    @rule(by=st.sampled_from(PEOPLE))
    def take_back(self, by: str) -> None:
        self._attempt(lambda: self.folder.take_back(by, "", self.clock))

    @rule(
        delegator=st.sampled_from(PEOPLE),
        delegate=st.sampled_from(PEOPLE),
        desks=st.frozensets(st.sampled_from(DESKS)),
    )
    def delegate(self, delegator: str, delegate: str, desks: frozenset[str]) -> None:
        self.delegations.append(
            Delegation(
                f"d{len(self.delegations)}",
                delegator,
                delegate,
                desks,
                NOW,
                NOW + timedelta(days=30),
            )
        )

    @rule(hours=st.integers(1, 48))
    def time_passes(self, hours: int) -> None:
        self.clock += timedelta(hours=hours)
        self.folder.remind(self.clock)
        self.folder.mark_overdue(self.clock)
        self._collect()

    @invariant()
    def state_is_valid(self) -> None:
        folder = self.folder
        assert folder.status in {"submitted", "in_progress", *TERMINAL}
        assert 0 <= folder.current_step <= len(folder.steps)
        if self.terminal_seen is not None:
            assert folder.status == self.terminal_seen, "terminal states are terminal"
        if folder.is_closed:
            self.terminal_seen = folder.status
        if folder.status == "in_progress":
            assert folder.assigned_step == folder.current_step < len(folder.steps)

    @invariant()
    def a_signed_folder_had_every_step_done(self) -> None:
        folder = self.folder
        if folder.status != "signed":
            return
        for index, step in enumerate(folder.steps):
            done = folder.taken_slots(index)
            wanted = 1 if step.mode == "any" or step.kind == "seal" else len(step.actors)
            assert len(done) >= wanted
        # One signature per signing slot: a seal or an "any" step one, an "all" step one each.
        expected = sum(
            len(step.actors) if step.mode == "all" and step.kind == "signature" else 1
            for step in folder.steps
            if step.kind != "visa"
        )
        assert len(folder.signatures) == expected

    @invariant()
    def the_history_rebuilds_the_same_state(self) -> None:
        again = Folder.rebuild("f", "bordeaux", self.events)  # type: ignore[arg-type]
        assert (again.status, again.current_step, again.document) == (
            self.folder.status,
            self.folder.current_step,
            self.folder.document,
        )


FolderLifecycle.TestCase.settings = settings(
    max_examples=150, stateful_step_count=30, deadline=None
)
TestFolderLifecycle = FolderLifecycle.TestCase
