"""The subject scheme.

Every event is published on

    evt.<service>.<tenant>.<aggregate>.<aggregate_id>.<entity>.<action>

for example `evt.parapheur.bordeaux.folder.0193c1e2….step.assigned`. So a consumer filters
by service (`evt.parapheur.>`), tenant (`evt.*.bordeaux.>`), event (`evt.*.*.*.*.step.assigned`)
or one aggregate (`evt.parapheur.bordeaux.folder.<id>.>`), and a producer appends to one
aggregate with optimistic concurrency by checking the last sequence on the aggregate's filter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PREFIX = "evt"
TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
NAME_TOKEN_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")


class InvalidSubject(ValueError):
    pass


def check_token(kind: str, value: str, *, name_like: bool = False) -> str:
    pattern = NAME_TOKEN_PATTERN if name_like else TOKEN_PATTERN
    if not pattern.match(value):
        raise InvalidSubject(
            f"{kind} {value!r} is not a valid subject token "
            f"({'lowercase name' if name_like else 'letters, digits, - and _'}, no dots)"
        )
    return value


@dataclass(frozen=True)
class Subject:
    service: str
    tenant: str
    aggregate: str
    aggregate_id: str
    entity: str
    action: str

    def __post_init__(self) -> None:
        check_token("service", self.service, name_like=True)
        check_token("tenant", self.tenant, name_like=True)
        check_token("aggregate", self.aggregate, name_like=True)
        check_token("aggregate id", self.aggregate_id)
        check_token("entity", self.entity, name_like=True)
        check_token("action", self.action, name_like=True)

    def __str__(self) -> str:
        return ".".join(
            (
                PREFIX,
                self.service,
                self.tenant,
                self.aggregate,
                self.aggregate_id,
                self.entity,
                self.action,
            )
        )

    @property
    def event_name(self) -> str:
        return f"{self.entity}.{self.action}"

    @property
    def aggregate_filter(self) -> str:
        """Every event of this subject's aggregate: what optimistic concurrency checks."""
        return SubjectFilter.aggregate(self.service, self.tenant, self.aggregate, self.aggregate_id)

    @classmethod
    def parse(cls, subject: str) -> Subject:
        parts = subject.split(".")
        if len(parts) != 7 or parts[0] != PREFIX:
            raise InvalidSubject(
                f"subject {subject!r} does not follow "
                f"{PREFIX}.<service>.<tenant>.<aggregate>.<id>.<entity>.<action>"
            )
        return cls(*parts[1:])

    @classmethod
    def split(cls, subject: str) -> tuple[str, ...] | None:
        """The six tokens of a well-formed subject, unchecked: the hot path of decoding,
        which then compares them with the envelope and the event type it claims."""
        parts = subject.split(".")
        if len(parts) != 7 or parts[0] != PREFIX:
            return None
        return tuple(parts[1:])


class SubjectFilter:
    """Builds the filters consumers and streams use; '*' stands for any token."""

    @staticmethod
    def service(service: str) -> str:
        return f"{PREFIX}.{service}.>"

    @staticmethod
    def tenant(tenant: str, service: str = "*") -> str:
        return f"{PREFIX}.{service}.{tenant}.>"

    @staticmethod
    def event(service: str, event_name: str, tenant: str = "*") -> str:
        entity, action = event_name.split(".")
        return f"{PREFIX}.{service}.{tenant}.*.*.{entity}.{action}"

    @staticmethod
    def aggregate(service: str, tenant: str, aggregate: str, aggregate_id: str) -> str:
        return f"{PREFIX}.{service}.{tenant}.{aggregate}.{aggregate_id}.>"
