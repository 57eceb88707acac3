"""A small private contract for the tests: two parapheur events and a notifications consumer.

Nothing here touches the process-wide catalog, so these tests cannot leak demo events into
the published contract.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from mutualis_kernel.bus.spec import ConsumerSpec
from mutualis_kernel.contract import Contract
from mutualis_kernel.events import EventCatalog, domain_event
from mutualis_kernel.events.registry import Event
from mutualis_kernel.service import ServiceManifest
from mutualis_kernel.streams import Resources, events_stream


class PrivateCatalog(EventCatalog):
    """An EventCatalog that stays truthy while empty.

    `domain_event(..., into=c)` picks the catalog with `into or catalog`, so an empty (falsy,
    it has `__len__`) private catalog sends the first events to the process catalog instead.
    Reported to the kernel's owner; this keeps the tests private until it is fixed.
    """

    def __bool__(self) -> bool:
        return True


class Signer(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    email: str
    name: str | None = None


def demo_catalog() -> EventCatalog:
    catalog = PrivateCatalog()

    @domain_event("parapheur", "folder.submitted", aggregate="folder", into=catalog)
    class FolderSubmitted(Event):
        """A folder was submitted to its circuit."""

        title: str
        signers: list[Signer]

    @domain_event("parapheur", "step.assigned", aggregate="folder", into=catalog)
    class StepAssigned(Event):
        """A step of a folder's circuit was assigned to a desk."""

        desk: str

    return catalog


PARAPHEUR = ServiceManifest(
    name="parapheur",
    description="Signature circuits.",
    default_port=8002,
    resources=Resources(streams=(events_stream("parapheur", "Parapheur events."),)),
)

NOTIFY_STEPS = ConsumerSpec(
    durable="notifications-steps",
    stream="PARAPHEUR_EVENTS",
    filter_subjects=("evt.parapheur.*.*.*.step.assigned",),
    service="notifications",
    description="Mails the desk a step was assigned to.",
)

NOTIFICATIONS = ServiceManifest(
    name="notifications",
    description="Mails and notices.",
    default_port=8004,
    resources=Resources(),
    consumers=(NOTIFY_STEPS,),
)


def demo_contract(catalog: EventCatalog | None = None) -> Contract:
    return Contract(catalog if catalog is not None else demo_catalog(), (PARAPHEUR, NOTIFICATIONS))
