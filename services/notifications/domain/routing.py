"""Routing rules: which event becomes which notification, for whom, on which channels.

Rules are declarative YAML, versioned, with the territory's defaults below and per-tenant
overrides (a tenant's rule for an event type replaces the default one; `enabled: false`
silences it). Recipients are selectors resolved later against the identity projection:
user ids read from payload fields, the event's own aggregate (a user), every user of the
tenant holding a role, or every user of the tenant holding a desk named in a payload field.

Desks ("bureaux") follow the parapheur's convention: an agent holds desk `X` when identity
gave them the role `desk:X` (services/parapheur/entrypoints/api.py), so a step assigned to a
desk reaches every agent of the tenant holding it.
"""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from notifications.domain.errors import InvalidRoutes
from notifications.domain.model import Channel

#: The role by which identity says an agent holds a desk: `desk:<desk id>`.
DESK_ROLE_PREFIX = "desk:"


class Recipients(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    users_from: tuple[str, ...] = ()
    aggregate_user: bool = False
    roles: tuple[str, ...] = ()
    #: Payload fields holding desk ids; each desk's holders (role `desk:<id>`) are recipients.
    desks_from: tuple[str, ...] = ()


class Rule(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    event: str = Field(pattern=r"^mutualis\.[a-z0-9-]+\.[a-z0-9_-]+\.[a-z0-9_-]+\.v[0-9]+$")
    kind: str
    category: str = "general"
    channels: tuple[Channel, ...] = ("email", "inapp")
    critical: bool = False
    recipients: Recipients
    #: template variable -> payload field (dotted path) or `$aggregate_id` / `$tenant`.
    variables: dict[str, str] = Field(default_factory=dict)
    enabled: bool = True


class RoutingRules(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int = Field(ge=1)
    rules: tuple[Rule, ...] = ()

    def for_event(self, type_name: str) -> Rule | None:
        for rule in self.rules:
            if rule.event == type_name:
                return rule
        return None


def parse_routes(text: str) -> RoutingRules:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise InvalidRoutes(f"not YAML: {error}") from None
    try:
        return RoutingRules.model_validate(raw)
    except ValidationError as error:
        raise InvalidRoutes(f"invalid routing rules: {error.errors()[:3]}") from None


def effective_rule(
    type_name: str, defaults: RoutingRules, tenant: RoutingRules | None
) -> Rule | None:
    rule = tenant.for_event(type_name) if tenant else None
    rule = rule or defaults.for_event(type_name)
    return rule if rule and rule.enabled else None


def _field(data: dict[str, Any], path: str) -> Any:
    value: Any = data
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def variables_for(
    rule: Rule, data: dict[str, Any], *, tenant: str, aggregate_id: str
) -> dict[str, Any]:
    """The template variables a rule extracts; a missing field stays missing (StrictUndefined)."""
    out: dict[str, Any] = {}
    for name, source in rule.variables.items():
        if source == "$aggregate_id":
            out[name] = aggregate_id
        elif source == "$tenant":
            out[name] = tenant
        else:
            value = _field(data, source)
            if value is not None:
                out[name] = value
    return out


def _strings(data: dict[str, Any], paths: tuple[str, ...]) -> list[str]:
    found: list[str] = []
    for path in paths:
        value = _field(data, path)
        if isinstance(value, str):
            found.append(value)
        elif isinstance(value, (list, tuple)):
            found.extend(v for v in value if isinstance(v, str))
    return found


def user_ids_for(rule: Rule, data: dict[str, Any], *, aggregate_id: str) -> list[str]:
    found: list[str] = [aggregate_id] if rule.recipients.aggregate_user else []
    found.extend(_strings(data, rule.recipients.users_from))
    return list(dict.fromkeys(found))


def desk_roles_for(rule: Rule, data: dict[str, Any]) -> tuple[str, ...]:
    """The roles held by the agents of the desks a rule names (`desk:<id>` each)."""
    desks = dict.fromkeys(_strings(data, rule.recipients.desks_from))
    return tuple(f"{DESK_ROLE_PREFIX}{desk}" for desk in desks)


DEFAULT_ROUTES_YAML = """
version: 1
rules:
  - event: mutualis.parapheur.step.assigned.v1
    kind: parapheur.step.assigned
    category: workflow
    channels: [email, inapp]
    recipients: {users_from: [users], desks_from: [desks]}
    variables: {folder_id: $aggregate_id, step: step}
  - event: mutualis.parapheur.folder.completed.v1
    kind: parapheur.folder.completed
    category: workflow
    channels: [email, inapp]
    recipients: {users_from: [submitted_by]}
    variables: {folder_id: $aggregate_id, title: title}
  - event: mutualis.parapheur.folder.rejected.v1
    kind: parapheur.folder.rejected
    category: workflow
    channels: [email, inapp]
    recipients: {users_from: [returned_to]}
    variables: {folder_id: $aggregate_id, title: $aggregate_id, reason: reason}
  - event: mutualis.parapheur.reminder.due.v1
    kind: parapheur.reminder.due
    category: reminders
    channels: [email, inapp]
    recipients: {users_from: [users], desks_from: [desks]}
    variables: {folder_id: $aggregate_id, due_at: due_at}
  - event: mutualis.parapheur.folder.overdue.v1
    kind: parapheur.folder.overdue
    category: reminders
    channels: [email, inapp]
    recipients: {users_from: [users], desks_from: [desks]}
    variables: {folder_id: $aggregate_id, due_at: due_at}
  - event: mutualis.identity.user.registered.v1
    kind: identity.welcome
    category: account
    channels: [email]
    recipients: {users_from: [user_id]}
    variables: {name: name}
  - event: mutualis.identity.refresh.reused.v1
    kind: identity.security.refresh-reused
    category: security
    critical: true
    channels: [email, inapp]
    recipients: {users_from: [user_id]}
    variables: {client_id: client_id}
  - event: mutualis.identity.device.first_seen.v1
    kind: identity.security.new-device
    category: security
    critical: true
    channels: [email, inapp]
    recipients: {users_from: [user_id]}
    variables: {browser: browser, os: os}
  - event: mutualis.archive.integrity.failed.v1
    kind: archive.integrity.failed
    category: archives
    channels: [email, inapp]
    recipients: {roles: [archivist]}
    variables: {reference: reference, reason: reason}
"""

DEFAULT_ROUTES = parse_routes(DEFAULT_ROUTES_YAML)
