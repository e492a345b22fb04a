"""Snapshot events: CDC-style `upsert` and `patch` with a `data` object, `delete` without.

A snapshot log has the balance log's faults, which there also give late deletes (a delete
for a `seq` lower than events delivered before it), re-delivered deletes, copies whose `data`
is the same object written another way (member order, spacing, `1.50` for `1.5`, a string
holding the object), and garbage the snapshot fold rejects (`data` missing or not an object).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar

from pipelines.generate.base import Delivered, EventKind

if TYPE_CHECKING:
    from pipelines.generate.log import GeneratedLog

SNAPSHOT_GARBAGE_KINDS = (
    "truncated",
    "not_json",
    "missing_field",
    "bad_seq",
    "unknown_op",
    "bad_event_time",
    "not_an_object",
    "missing_data",  # an upsert or a patch without `data`: missing_field:data
    "bad_data",  # `data` that is not an object, nor a string holding one: bad_type:data
)
# How a snapshot event's `data` is written: the same object, other text (see `render_data`).
DATA_STYLES = ("object", "spaced", "text")


@dataclass(frozen=True)
class SnapshotEvent(Delivered):
    """A snapshot event: `data` (None on a delete), written in one of `DATA_STYLES`."""

    data: dict[str, Any] | None = None
    data_style: str = "object"

    def payload_json(self) -> str:
        return "" if self.data is None else f',"data":{render_data(self.data, self.data_style)}'

    def payload_value(self) -> Any:
        return None if self.data is None else render_data(self.data, "object")


class SnapshotEvents(EventKind):
    """Customer records: `upsert` first, then mostly `patch`, now and then a `delete`."""

    event_class = SnapshotEvent
    key_prefix = "cust"
    column = "data"
    parquet_type = "string"
    garbage_kinds = SNAPSHOT_GARBAGE_KINDS
    unknown_ops = ("merge", "UPSERT", "")
    valid_payload: ClassVar[dict[str, Any]] = {"op": "upsert", "data": {"name": "junk"}}

    def content(self, rng: random.Random, seq: int) -> dict[str, Any]:
        op = _pick_snapshot_op(rng, seq)
        data = None if op == "delete" else _entity(rng) if op == "upsert" else _patch(rng)
        return {"op": op, "data": data}

    def style(self, rng: random.Random) -> dict[str, Any]:
        return {"data_style": rng.choice(DATA_STYLES)}

    def conflicting(self, rng: random.Random, event: SnapshotEvent) -> dict[str, Any]:
        if event.data is None:  # the other copy of a delete says the entity lives on
            return {"op": "upsert", "data": _entity(rng)}
        return {"data": {**event.data, "revision": rng.randint(2, 99)}}

    def redelivered(
        self, rng: random.Random, event: SnapshotEvent, log: GeneratedLog
    ) -> dict[str, Any]:
        if event.data is None:
            log.injected["redelivered_delete"] += 1
            return {}
        log.injected["rewritten_data"] += 1  # the same object in other text: identical copies
        return {"data_style": rng.choice([s for s in DATA_STYLES if s != event.data_style])}


def _pick_snapshot_op(rng: random.Random, seq: int) -> str:
    roll = rng.random()
    if seq == 1:
        return "upsert" if roll < 0.9 else "patch"  # a patch of an absent entity applies to {}
    return "delete" if roll < 0.1 else "upsert" if roll < 0.3 else "patch"


_NAMES = ("Ada", "Bo", "Chloé", "Dmitri", "Eun-ji", "Femi")
_CITIES = ("Paris", "Lagos", "Osaka", "Lima", "Oslo")
_STATUSES = ("active", "suspended", "closed")
_TAGS = ("vip", "new", "b2b", "churn-risk")
_PATCHABLE = ("status", "credit_limit", "address", "nickname", "tags")


def _entity(rng: random.Random) -> dict[str, Any]:
    """A whole customer record: a nested object, a list, money with cents, maybe a null."""
    entity: dict[str, Any] = {
        "name": rng.choice(_NAMES),
        "status": rng.choice(_STATUSES),
        "credit_limit": _money(rng),
        "address": {"city": rng.choice(_CITIES), "zip": f"{rng.randint(1000, 99999):05d}"},
        "tags": rng.sample(_TAGS, rng.randint(0, 2)),
    }
    if rng.random() < 0.3:
        entity["nickname"] = rng.choice((None, "Ace", "Z"))  # an upsert keeps a null member
    return entity


def _patch(rng: random.Random) -> dict[str, Any]:
    """A JSON Merge Patch of one to three members; a null removes its member."""
    members = rng.sample(_PATCHABLE, rng.randint(1, 3))
    return {member: _patch_value(rng, member) for member in members}


def _patch_value(rng: random.Random, member: str) -> Any:
    if member == "status":
        return rng.choice(_STATUSES)
    if member == "credit_limit":
        return _money(rng)
    if member == "address":  # merged into the address, or the address removed
        return rng.choice(({"city": rng.choice(_CITIES)}, {"zip": None}, None))
    if member == "nickname":
        return rng.choice((None, "Ace"))
    return rng.sample(_TAGS, rng.randint(0, 2))  # a list is replaced whole


def _money(rng: random.Random) -> Decimal:
    """Cents in steps of 5: every other value written with a trailing zero (`12.50`)."""
    return Decimal(rng.randint(0, 20_000) * 5).scaleb(-2)


def render_data(data: dict[str, Any], style: str) -> str:
    """`data` as JSON text in a style: `object` compact, members in order, numbers as generated
    (`12.50`); `spaced` with blanks, members reversed, numbers trimmed (`12.5`); `text` a JSON
    string holding the compact object. The same object each time."""
    if style == "text":
        return json.dumps(_json_text(data, spaced=False))
    return _json_text(data, spaced=style == "spaced")


def _json_text(value: Any, spaced: bool) -> str:
    comma = " , " if spaced else ","
    if isinstance(value, dict):
        colon = " : " if spaced else ":"
        members = reversed(value.items()) if spaced else value.items()
        inner = comma.join(f"{json.dumps(k)}{colon}{_json_text(v, spaced)}" for k, v in members)
        return f"{{ {inner} }}" if spaced else f"{{{inner}}}"
    if isinstance(value, list):
        return "[" + comma.join(_json_text(item, spaced) for item in value) + "]"
    if isinstance(value, Decimal):
        return format(value.normalize(), "f") if spaced else str(value)
    return json.dumps(value)
