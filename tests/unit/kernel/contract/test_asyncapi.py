"""The AsyncAPI document built from a small private contract.

Structure is checked against the official AsyncAPI 3.0.0 JSON schema, vendored beside this
file: `asyncapi-3.0.0.schema.json` is `schemas/3.0.0-without-$id.json` from the npm package
`@asyncapi/specs` 6.11.1 (Apache-2.0). That schema does not follow `$ref`s inside the
document, so a test here resolves every one of them.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from mutualis_kernel.contract import ENVELOPE_HEADERS, build_asyncapi, render_yaml
from mutualis_kernel.events import Envelope, encode
from mutualis_kernel.tenants import default_tenants

from . import demo
from .demo import NOTIFICATIONS, PARAPHEUR, demo_catalog

SUBMITTED = "mutualis.parapheur.folder.submitted.v1"
ASSIGNED = "mutualis.parapheur.step.assigned.v1"


@cache
def asyncapi_schema() -> dict[str, Any]:
    path = Path(__file__).with_name("asyncapi-3.0.0.schema.json")
    loaded: dict[str, Any] = json.loads(path.read_text("utf-8"))
    return loaded


@pytest.fixture
def document() -> dict[str, Any]:
    return build_asyncapi(demo_catalog(), [PARAPHEUR, NOTIFICATIONS])


def resolve(document: dict[str, Any], ref: str) -> Any:
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in refs(value)]
    if isinstance(node, list):
        return [r for item in node for r in refs(item)]
    return []


def test_the_document_is_valid_asyncapi_3(document: dict[str, Any]) -> None:
    jsonschema.Draft7Validator(asyncapi_schema()).validate(document)
    assert document["asyncapi"] == "3.0.0"
    assert document["info"]["title"] == "Mutualis events"
    assert document["defaultContentType"] == "application/json"


def test_an_empty_catalog_still_gives_a_valid_document() -> None:
    from .demo import PrivateCatalog

    empty = build_asyncapi(PrivateCatalog(), [])
    jsonschema.Draft7Validator(asyncapi_schema()).validate(empty)
    assert empty["channels"] == {}
    assert empty["operations"] == {}


def test_every_reference_in_the_document_resolves(document: dict[str, Any]) -> None:
    found = refs(document)
    assert found
    for ref in found:
        assert ref.startswith("#/"), ref
        resolve(document, ref)  # raises KeyError if dangling


def test_the_server_is_nats_with_its_hosts_as_variables(document: dict[str, Any]) -> None:
    server = document["servers"]["nats"]
    assert server["protocol"] == "nats"
    assert server["host"] == "{host}:{port}"
    assert set(server["variables"]) == {"host", "port"}
    assert "Production" in server["variables"]["host"]["description"]


def test_a_channel_is_the_subject_pattern_with_its_parameters(document: dict[str, Any]) -> None:
    channel = document["channels"]["parapheur.folder.folder.submitted"]
    assert channel["address"] == "evt.parapheur.{tenant}.folder.{aggregateId}.folder.submitted"
    tenant = resolve(document, channel["parameters"]["tenant"]["$ref"])
    assert tenant["enum"] == list(default_tenants().slugs)
    assert "aggregateId" in channel["parameters"]
    assert list(channel["messages"]) == [SUBMITTED]


def test_versions_of_one_event_share_a_channel() -> None:
    from mutualis_kernel.events import domain_event
    from mutualis_kernel.events.registry import Event

    catalog = demo_catalog()

    @domain_event("parapheur", "folder.submitted", version=2, aggregate="folder", into=catalog)
    class FolderSubmittedV2(Event):
        title: str

    document = build_asyncapi(catalog, [PARAPHEUR])
    channel = document["channels"]["parapheur.folder.folder.submitted"]
    assert list(channel["messages"]) == [SUBMITTED, "mutualis.parapheur.folder.submitted.v2"]


def test_a_message_carries_the_payload_schema_with_its_definitions_in_components(
    document: dict[str, Any],
) -> None:
    message = document["components"]["messages"][SUBMITTED]
    payload = message["payload"]
    assert "$defs" not in payload
    assert payload["properties"]["signers"]["items"] == {"$ref": "#/components/schemas/Signer"}
    assert document["components"]["schemas"]["Signer"]["required"] == ["email"]
    assert message["correlationId"]["location"] == "$message.header#/ce-correlationid"
    assert message["description"] == "A folder was submitted to its circuit."


def test_the_payload_schema_accepts_the_event_and_refuses_unknown_fields(
    document: dict[str, Any],
) -> None:
    model = demo_catalog().model_for(SUBMITTED)
    assert model is not None
    event = model.model_validate({"title": "Budget 2026", "signers": [{"email": "a@b.fr"}]})
    # The payload validated in place, its references resolved against the whole document.
    validator = jsonschema.Draft202012Validator(
        {**document, "$ref": f"#/components/messages/{SUBMITTED}/payload"}
    )
    validator.validate(json.loads(event.model_dump_json()))
    with pytest.raises(jsonschema.ValidationError):
        validator.validate({**json.loads(event.model_dump_json()), "extra": 1})


def test_the_header_schema_describes_what_encode_writes(document: dict[str, Any]) -> None:
    model = demo_catalog().model_for(ASSIGNED)
    assert model is not None
    envelope = Envelope(
        data=model.model_validate({"desk": "finance"}),
        tenant="bordeaux",
        aggregate_id="f1",
        correlation_id="journey-1",
        datacenter="dc2",
        trace_headers={"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"},
    )
    _, headers, _ = encode(envelope)
    schema = document["components"]["schemas"]["CloudEventsHeaders"]
    jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    ).validate(headers)
    assert set(headers) <= {header.name for header in ENVELOPE_HEADERS}
    assert set(schema["required"]) <= set(headers)
    ce_type = document["components"]["messages"][ASSIGNED]["headers"]["allOf"][1]
    assert ce_type["properties"]["ce-type"]["const"] == headers["ce-type"]


def test_the_producer_sends_each_event_type(document: dict[str, Any]) -> None:
    send = document["operations"][f"{SUBMITTED}.send"]
    assert send["action"] == "send"
    assert send["tags"] == [{"name": "parapheur"}]
    assert send["channel"] == {"$ref": "#/channels/parapheur.folder.folder.submitted"}
    assert send["messages"] == [
        {"$ref": f"#/channels/parapheur.folder.folder.submitted/messages/{SUBMITTED}"}
    ]


def test_a_consumer_receives_only_the_events_its_filters_match(
    document: dict[str, Any],
) -> None:
    receives = {k: v for k, v in document["operations"].items() if v["action"] == "receive"}
    assert list(receives) == [f"{ASSIGNED}.receive.notifications-steps"]
    operation = receives[f"{ASSIGNED}.receive.notifications-steps"]
    assert operation["tags"] == [{"name": "notifications"}]
    assert operation["bindings"]["nats"]["queue"] == "notifications-steps"
    assert operation["channel"] == {"$ref": "#/channels/parapheur.folder.step.assigned"}


def test_a_consumer_on_a_stream_that_lacks_the_subjects_receives_nothing() -> None:
    from dataclasses import replace

    wrong_stream = replace(
        NOTIFICATIONS,
        consumers=(
            replace(NOTIFICATIONS.consumers[0], stream="IDENTITY_EVENTS", filter_subjects=()),
        ),
    )
    identity = replace(
        PARAPHEUR,
        name="identity",
        resources=replace(
            PARAPHEUR.resources,
            streams=(
                replace(
                    PARAPHEUR.resources.streams[0],
                    name="IDENTITY_EVENTS",
                    subjects=("evt.identity.>",),
                ),
            ),
        ),
    )
    document = build_asyncapi(demo_catalog(), [PARAPHEUR, identity, wrong_stream])
    assert all(op["action"] == "send" for op in document["operations"].values())


def test_the_yaml_is_stable_and_reads_back_as_the_document(document: dict[str, Any]) -> None:
    text = render_yaml(document)
    assert text.startswith("# Generated by")
    assert "&id" not in text  # no YAML anchors: every occurrence is written out
    assert yaml.safe_load(text) == document
    assert render_yaml(build_asyncapi(demo_catalog(), [NOTIFICATIONS, PARAPHEUR])) == text


def test_two_events_with_different_nested_models_of_one_name_keep_both() -> None:
    from pydantic import BaseModel, ConfigDict

    from mutualis_kernel.events import domain_event
    from mutualis_kernel.events.registry import Event

    from .demo import PrivateCatalog

    catalog = PrivateCatalog()

    class Signer(BaseModel):  # the same class name as demo.Signer, another shape
        model_config = ConfigDict(frozen=True, extra="forbid")
        desk: str

    @domain_event("parapheur", "folder.submitted", aggregate="folder", into=catalog)
    class FolderSubmitted(Event):
        signers: list[demo.Signer]

    @domain_event("parapheur", "step.assigned", aggregate="folder", into=catalog)
    class StepAssigned(Event):
        signer: Signer

    document = build_asyncapi(catalog, [PARAPHEUR])
    schemas = document["components"]["schemas"]
    qualified = f"Signer-{ASSIGNED}"
    assert schemas["Signer"]["required"] == ["email"]
    assert schemas[qualified]["required"] == ["desk"]
    payload = document["components"]["messages"][ASSIGNED]["payload"]
    assert payload["properties"]["signer"] == {"$ref": f"#/components/schemas/{qualified}"}
    jsonschema.Draft7Validator(asyncapi_schema()).validate(document)
