"""Typed, versioned event types and the catalog that knows them all.

An event type is a frozen pydantic model decorated with `@domain_event`, which gives it a
versioned CloudEvents type name such as `mutualis.parapheur.folder.submitted.v1`. The catalog
maps type names back to models when events are decoded, and feeds the AsyncAPI document.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict

from mutualis_kernel.events.subjects import check_token

TYPE_PREFIX = "mutualis"


class Event(BaseModel):
    """Base of every event payload: immutable, strict about unknown fields.

    Names are in the past tense (`FolderSubmitted`): an event states a fact.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    service: ClassVar[str]
    event_name: ClassVar[str]
    version: ClassVar[int]
    aggregate: ClassVar[str]
    description: ClassVar[str]

    @classmethod
    def type_name(cls) -> str:
        # Asked for every event consumed or published: built once per class.
        name = _TYPE_NAMES.get(cls)
        if name is None:
            name = _TYPE_NAMES[cls] = type_name(cls.service, cls.event_name, cls.version)
        return name


_TYPE_NAMES: dict[type[Event], str] = {}


def type_name(service: str, event_name: str, version: int) -> str:
    return f"{TYPE_PREFIX}.{service}.{event_name}.v{version}"


@dataclass(frozen=True)
class EventTypeInfo:
    model: type[Event]
    service: str
    event_name: str
    version: int
    aggregate: str

    @property
    def type_name(self) -> str:
        return type_name(self.service, self.event_name, self.version)


class DuplicateEventType(ValueError):
    pass


class EventCatalog:
    """Every event type the running code knows, by CloudEvents type name."""

    def __init__(self) -> None:
        self._types: dict[str, EventTypeInfo] = {}

    def register(self, info: EventTypeInfo) -> None:
        existing = self._types.get(info.type_name)
        if existing is not None and existing.model is not info.model:
            raise DuplicateEventType(f"{info.type_name} is declared twice")
        self._types[info.type_name] = info

    def model_for(self, type_name: str) -> type[Event] | None:
        info = self._types.get(type_name)
        return info.model if info else None

    def info(self, type_name: str) -> EventTypeInfo | None:
        return self._types.get(type_name)

    def __iter__(self) -> Iterator[EventTypeInfo]:
        return iter(sorted(self._types.values(), key=lambda i: i.type_name))

    def __len__(self) -> int:
        return len(self._types)


#: The process-wide catalog. Event modules register into it when imported, the way
#: SQLAlchemy's declarative base collects tables; tests may build their own catalogs.
catalog = EventCatalog()

E = TypeVar("E", bound=Event)


def domain_event(
    service: str,
    event_name: str,
    *,
    version: int = 1,
    aggregate: str,
    into: EventCatalog | None = None,
) -> Callable[[type[E]], type[E]]:
    """Declare an event type: `@domain_event("parapheur", "folder.submitted", aggregate="folder")`.

    `event_name` is `<entity>.<action>`, the action in the past tense; `version` is bumped on
    any breaking change of the payload (the compatibility test enforces it).
    """
    check_token("service", service, name_like=True)
    check_token("aggregate", aggregate, name_like=True)
    entity, _, action = event_name.partition(".")
    check_token("event entity", entity, name_like=True)
    check_token("event action", action, name_like=True)
    if version < 1:
        raise ValueError("event versions start at 1")

    def decorate(model: type[E]) -> type[E]:
        model.service = service
        model.event_name = event_name
        model.version = version
        model.aggregate = aggregate
        model.description = (model.__doc__ or "").strip()
        (catalog if into is None else into).register(
            EventTypeInfo(model, service, event_name, version, aggregate)
        )
        return model

    return decorate


def schema_of(model: type[Event]) -> dict[str, Any]:
    return model.model_json_schema(mode="serialization")
