"""The compatibility guard: which payload changes force a new event version.

An event type, once published, is read for as long as its stream keeps it (the `<SERVICE>_EVENTS`
streams keep everything), by code that may be newer than the event. So a change to a published
type is *breaking* when the new schema would refuse a payload the old one accepted: a removed
or renamed property (models forbid unknown fields), a changed type, format or constraint, a
narrowed enum or union, a property that became required, a tightened `additionalProperties`.
Adding an optional property, widening an enum or a union, and editing titles, descriptions or
defaults are not breaking.

`snapshot` records the schemas the code declares; `breaking_changes` compares two snapshots.
Both work on plain JSON schemas as pydantic writes them, so the committed snapshot
(`docs/event-schemas.json`) can be compared with a catalog without importing old code.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from mutualis_kernel.events.registry import EventCatalog, schema_of

#: A JSON schema, as parsed from JSON: values are whatever JSON holds.
Schema = Mapping[str, Any]

_VERSIONED = re.compile(r"^(?P<base>.+)\.v(?P<version>\d+)$")

#: Keywords that narrow the values a schema accepts when they grow (`min*`) or shrink (`max*`).
_LOWER_BOUNDS = ("minLength", "minimum", "exclusiveMinimum", "minItems", "minProperties")
_UPPER_BOUNDS = ("maxLength", "maximum", "exclusiveMaximum", "maxItems", "maxProperties")


def snapshot(catalog: EventCatalog) -> dict[str, dict[str, Any]]:
    """Every event type the catalog declares, with its payload JSON schema (as serialised)."""
    return {info.type_name: schema_of(info.model) for info in catalog}


def breaking_changes(old: Mapping[str, Schema], new: Mapping[str, Schema]) -> list[str]:
    """What in `new` would break readers of events published under `old`, one line each."""
    problems: list[str] = []
    latest = _latest_versions(new)
    for type_name in sorted(old):
        if type_name in new:
            comparer = _Comparer(old[type_name], new[type_name])
            problems.extend(f"{type_name}: {change}" for change in comparer.compare())
            continue
        base, version = _split_version(type_name)
        if latest.get(base, 0) <= version:
            problems.append(f"removed event type {type_name}: keep it or publish a new version")
    return problems


def _split_version(type_name: str) -> tuple[str, int]:
    match = _VERSIONED.match(type_name)
    if match is None:
        return type_name, 0
    return match["base"], int(match["version"])


def _latest_versions(types: Mapping[str, Schema]) -> dict[str, int]:
    latest: dict[str, int] = {}
    for type_name in types:
        base, version = _split_version(type_name)
        latest[base] = max(latest.get(base, 0), version)
    return latest


@dataclass(frozen=True)
class _Variant:
    """One alternative of a (possibly union) schema, with the kind of JSON value it accepts."""

    kind: str  # a JSON type, or "any"
    schema: Schema
    ref: str = ""  # the `$def` it came from, to stop on recursive models


class _Comparer:
    """Compares an old and a new payload schema, each resolving `$ref`s in its own `$defs`."""

    def __init__(self, old_root: Schema, new_root: Schema) -> None:
        self._old_root = old_root
        self._new_root = new_root
        self._in_progress: set[tuple[str, str]] = set()

    def compare(self) -> list[str]:
        return list(self._schema(self._old_root, self._new_root, ""))

    # Resolution -------------------------------------------------------------------------

    def _resolve(self, schema: Schema, root: Schema) -> tuple[Schema, str]:
        """The schema behind `$ref`s and single-item `allOf`s, and the last `$ref` followed."""
        followed = ""
        seen: set[str] = set()
        while True:
            ref = schema.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/") and ref not in seen:
                seen.add(ref)
                followed = ref
                # Siblings of `$ref` (title, description, default) apply on top of the target.
                siblings = {k: v for k, v in schema.items() if k != "$ref"}
                schema = {**_pointer(root, ref), **siblings}
                continue
            all_of = schema.get("allOf")
            if isinstance(all_of, list) and len(all_of) == 1 and isinstance(all_of[0], dict):
                siblings = {k: v for k, v in schema.items() if k != "allOf"}
                schema = {**all_of[0], **siblings}
                continue
            return schema, followed

    def _variants(self, schema: Schema, root: Schema) -> list[_Variant]:
        schema, ref = self._resolve(schema, root)
        for keyword in ("anyOf", "oneOf"):
            alternatives = schema.get(keyword)
            if isinstance(alternatives, list):
                found: list[_Variant] = []
                for alternative in alternatives:
                    found.extend(self._variants(alternative, root))
                return found
        kinds = _kinds(schema)
        if len(kinds) == 1:
            return [_Variant(kinds[0], schema, ref)]
        # `type: [string, null]`: one alternative per listed type.
        return [_Variant(kind, {**schema, "type": kind}, ref) for kind in kinds]

    # Comparison -------------------------------------------------------------------------

    def _schema(self, old: Schema, new: Schema, path: str) -> Iterator[str]:
        old_variants = self._variants(old, self._old_root)
        new_variants = self._variants(new, self._new_root)
        if any(v.kind == "any" for v in new_variants):
            return  # the new schema accepts anything
        for old_variant in old_variants:
            candidates = [v for v in new_variants if _accepts_kind(v.kind, old_variant.kind)]
            if not candidates:
                yield _at(path, f"no longer accepts {_describe(old_variant)}")
                continue
            # A union may hold several alternatives of one kind (several models): the old
            # alternative is still accepted if one of them takes it without complaint.
            best: list[str] | None = None
            for candidate in candidates:
                found = self._paired(old_variant, candidate, path)
                if best is None or len(found) < len(best):
                    best = found
                if not found:
                    break
            yield from best or []

    def _paired(self, old: _Variant, new: _Variant, path: str) -> list[str]:
        key = (old.ref, new.ref)
        if old.ref and new.ref:
            if key in self._in_progress:
                return []  # a recursive model: this pair is being compared further up
            self._in_progress.add(key)
        try:
            return list(self._variant(old, new, path))
        finally:
            if old.ref and new.ref:
                self._in_progress.discard(key)

    def _variant(self, old: _Variant, new: _Variant, path: str) -> Iterator[str]:
        if old.kind == "any":
            yield _at(path, f"changed type from any value to {_describe(new)}")
            return
        yield from _values(old.schema, new.schema, path)
        yield from _bounds(old.schema, new.schema, path)
        if old.kind == "object":
            yield from self._object(old.schema, new.schema, path)
        elif old.kind == "array":
            yield from self._array(old.schema, new.schema, path)

    def _object(self, old: Schema, new: Schema, path: str) -> Iterator[str]:
        old_props: Mapping[str, Schema] = old.get("properties", {})
        new_props: Mapping[str, Schema] = new.get("properties", {})
        old_required = set(old.get("required", ()))
        new_required = set(new.get("required", ()))
        removed = [name for name in old_props if name not in new_props]
        added = [name for name in new_props if name not in old_props]
        for name in removed:
            hint = f" (renamed to {added[0]!r}?)" if len(removed) == len(added) == 1 else ""
            yield f"removed property {_join(path, name)!r}{hint}"
        for name in sorted(new_required - old_required):
            if name in old_props:
                yield f"property {_join(path, name)!r} became required"
            elif name in new_props:
                yield f"added required property {_join(path, name)!r}"
        for name, old_prop in old_props.items():
            if name in new_props:
                yield from self._schema(old_prop, new_props[name], _join(path, name))
        yield from self._additional(old, new, path)

    def _additional(self, old: Schema, new: Schema, path: str) -> Iterator[str]:
        # Absent means "anything": pydantic writes `false` for extra="forbid" and a schema
        # for dict values.
        old_extra = old.get("additionalProperties", True)
        new_extra = new.get("additionalProperties", True)
        if old_extra is False or new_extra is True:
            return
        if new_extra is False:
            yield _at(path, "additionalProperties tightened: extra properties now refused")
        elif old_extra is True:
            yield _at(path, "additionalProperties tightened: values now constrained")
        else:
            yield from self._schema(old_extra, new_extra, f"{path}{{}}")

    def _array(self, old: Schema, new: Schema, path: str) -> Iterator[str]:
        old_prefix: list[Schema] = old.get("prefixItems", [])
        new_prefix: list[Schema] = new.get("prefixItems", [])
        if len(old_prefix) != len(new_prefix):
            yield _at(path, f"tuple length changed from {len(old_prefix)} to {len(new_prefix)}")
        for index, (old_item, new_item) in enumerate(zip(old_prefix, new_prefix, strict=False)):
            yield from self._schema(old_item, new_item, f"{path}[{index}]")
        old_items = old.get("items", {})
        new_items = new.get("items", {})
        if isinstance(old_items, dict) and isinstance(new_items, dict):
            yield from self._schema(old_items, new_items, f"{path}[]")


def _values(old: Schema, new: Schema, path: str) -> Iterator[str]:
    """Enum, const, format and pattern: the checks on a scalar's accepted values."""
    old_enum = _enumeration(old)
    new_enum = _enumeration(new)
    if new_enum is not None:
        if old_enum is None:
            yield _at(path, f"now restricted to {_listing(new_enum)}")
        else:
            dropped = [value for value in old_enum if value not in new_enum]
            if dropped:
                yield _at(path, f"enum narrowed: {_listing(dropped)} no longer accepted")
    if old.get("format") != new.get("format"):
        yield _at(path, f"format changed from {_fmt(old)} to {_fmt(new)}")
    if "pattern" in new and old.get("pattern") != new.get("pattern"):
        yield _at(path, f"pattern changed from {old.get('pattern')!r} to {new['pattern']!r}")


def _bounds(old: Schema, new: Schema, path: str) -> Iterator[str]:
    for keyword in _LOWER_BOUNDS:
        if keyword in new and (keyword not in old or new[keyword] > old[keyword]):
            yield _at(path, f"{keyword} tightened from {old.get(keyword)} to {new[keyword]}")
    for keyword in _UPPER_BOUNDS:
        if keyword in new and (keyword not in old or new[keyword] < old[keyword]):
            yield _at(path, f"{keyword} tightened from {old.get(keyword)} to {new[keyword]}")


def _enumeration(schema: Schema) -> list[Any] | None:
    if "const" in schema:
        return [schema["const"]]
    values = schema.get("enum")
    return list(values) if isinstance(values, list) else None


def _kinds(schema: Schema) -> list[str]:
    declared = schema.get("type")
    if isinstance(declared, str):
        return [declared]
    if isinstance(declared, list) and declared:
        return [str(kind) for kind in declared]
    values = _enumeration(schema)
    if values:
        return sorted({_json_kind(value) for value in values})
    if "properties" in schema or "additionalProperties" in schema:
        return ["object"]
    if "items" in schema or "prefixItems" in schema:
        return ["array"]
    return ["any"]


def _json_kind(value: Any) -> str:
    # JSON types of a Python value from a parsed schema; bool before int, as bool is an int.
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _accepts_kind(new_kind: str, old_kind: str) -> bool:
    return new_kind == old_kind or (new_kind == "number" and old_kind == "integer")


def _describe(variant: _Variant) -> str:
    schema = variant.schema
    if "const" in schema:
        return f"the value {schema['const']!r}"
    if variant.kind == "object" and isinstance(schema.get("title"), str):
        return f"object ({schema['title']})"
    return variant.kind


def _pointer(root: Schema, ref: str) -> Schema:
    node: Any = root
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, Mapping) or part not in node:
            raise ValueError(f"unresolvable $ref {ref!r}")
        node = node[part]
    if not isinstance(node, Mapping):
        raise ValueError(f"$ref {ref!r} does not point at a schema")
    return node


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _at(path: str, change: str) -> str:
    return f"{path or '<payload>'}: {change}"


def _fmt(schema: Schema) -> str:
    value = schema.get("format")
    return repr(value) if value is not None else "none"


def _listing(values: list[Any]) -> str:
    return ", ".join(repr(value) for value in values)
