"""What every generated event is, and what one fold's events add to it.

`Delivered` is one copy of an event as written to the lake; an `EventKind` says what a fold's
events carry beyond the common fields and what each fault changes in them (`balance.py`,
`snapshot.py`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from pipelines.generate.log import GeneratedLog


@dataclass(frozen=True)
class Delivered:
    """One copy of an event as delivered to the lake: the fields every event has."""

    event_id: str
    key: str
    seq: int
    event_time: datetime
    op: str
    ingested_at: datetime

    def to_json(self) -> str:
        return (
            f'{{"event_id":"{self.event_id}","key":"{self.key}","seq":{self.seq},'
            f'"event_time":"{_iso(self.event_time)}","op":"{self.op}"{self.payload_json()},'
            f'"ingested_at":"{_iso(self.ingested_at)}"}}'
        )

    def payload_json(self) -> str:
        """The fold's own members as JSON, each after a comma."""
        return ""

    def payload_value(self) -> Any:
        """The fold's own field as its Parquet column holds it."""
        return None


class EventKind:
    """What one fold's events carry beyond the common fields, and what their faults change."""

    event_class: ClassVar[type[Delivered]]
    key_prefix: ClassVar[str]
    column: ClassVar[str]  # the fold's own field
    parquet_type: ClassVar[str]  # its Parquet column's type: decimal or string
    garbage_kinds: ClassVar[tuple[str, ...]]
    unknown_ops: ClassVar[tuple[str, ...]]
    valid_payload: ClassVar[dict[str, Any]]  # `op` and payload of a garbage line's base

    def key_name(self, index: int) -> str:
        """The generated log's name for its `index`-th key, e.g. `acct-000042`."""
        return f"{self.key_prefix}-{index:06d}"

    def content(self, rng: random.Random, seq: int) -> dict[str, Any]:
        """`op` and the payload of a new event with this `seq`."""
        raise NotImplementedError

    def style(self, rng: random.Random) -> dict[str, Any]:
        """How the payload is written."""
        raise NotImplementedError

    def conflicting(self, rng: random.Random, event: Any) -> dict[str, Any]:
        """What a copy with the same `event_id` and other content changes."""
        raise NotImplementedError

    def redelivered(self, rng: random.Random, event: Any, log: GeneratedLog) -> dict[str, Any]:
        """What an identical copy changes in how it is written: nothing by default."""
        return {}


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
