"""The built-in `snapshot` fold: an entity's latest state from CDC-style events (contract
section 8).

`upsert` makes the entity its `data`, `patch` merges `data` into it (JSON Merge Patch,
RFC 7386), `delete` removes it; a later `upsert` or `patch` brings it back. The state row
holds the entity as compact JSON text with sorted member names; a key whose last event is a
`delete` is a deletion, and its row leaves the state table.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql.types import StringType, StructField

from pipelines.folds.base import EventField, RowFold, sequence_counts, state_schema_with

Entity = dict[str, Any] | None

# Numbers keep the digits they were written with: a decimal, never a binary float.
_decode = msgspec.json.Decoder(float_hook=Decimal).decode
_encode = msgspec.json.Encoder(order="sorted", decimal_format="number").encode


def json_text(entity: dict[str, Any]) -> str:
    """Compact JSON with sorted member names: equal objects give equal text."""
    return _encode(entity).decode()


def parse_entity(text: str) -> dict[str, Any]:
    entity = _decode(text)
    assert isinstance(entity, dict)
    return entity


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: members replaced, nested objects merged, a `null` removes its member."""
    if not isinstance(patch, dict):
        return patch
    merged = dict(target) if isinstance(target, dict) else {}
    for name, value in patch.items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = merge_patch(merged.get(name), value)
    return merged


class SnapshotFold(RowFold):
    name = "snapshot"
    ops = frozenset({"upsert", "patch", "delete"})
    fields = (
        EventField(
            "data",
            "json",
            required_for=frozenset({"upsert", "patch"}),
            ignored_for=frozenset({"delete"}),  # a delete's `data`, whatever it is, is not read
        ),
    )
    count_column = "event_count"
    # `data` NULL: deleted, the row leaves the table
    state_schema = state_schema_with(StructField("data", StringType(), True))

    def fold_rows(self, key: str, events: list[dict[str, Any]]) -> dict[str, Any]:
        return self._state(key, None, events, None)

    def resume_rows(self, state: dict[str, Any], events: list[dict[str, Any]]) -> dict[str, Any]:
        entity = parse_entity(state["data"]) if state["data"] is not None else None
        return self._state(state["key"], entity, events, state)

    def is_deleted(self, states: pa.Table) -> pa.Array:
        return pc.is_null(states["data"])

    @staticmethod
    def _state(
        key: str, entity: Entity, events: list[dict[str, Any]], before: dict[str, Any] | None
    ) -> dict[str, Any]:
        for event in events:
            op = event["op"]
            if op == "delete":
                entity = None
            elif op == "upsert":
                entity = parse_entity(event["data"])
            else:  # patch
                entity = merge_patch(entity, parse_entity(event["data"]))
        return {
            "key": key,
            "data": None if entity is None else json_text(entity),
            **sequence_counts(events, before),
        }
