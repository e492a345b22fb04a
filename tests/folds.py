"""An example user fold, as docs/folds.md shows one: per-SKU stock with reservations.

Run it with `backfill run --fold tests.folds:StockFold ...`; it is checked with
`pipelines.testing.check_fold` in `tests/test_plugins.py`.
"""

from __future__ import annotations

from typing import Any

from pyspark.sql.types import LongType, StructField

from pipelines.folds import EventField, RowFold, sequence_counts, state_schema_with


class StockFold(RowFold):
    """A SKU's units on hand and reserved, from `receive`, `reserve`, `release`, `ship` and
    `count` events, each with a `quantity`; `available` is on hand minus reserved.

    `receive` adds to on hand, `reserve` and `release` move units in and out of reserved,
    `ship` sends reserved units (both go down), `count` sets on hand to what was counted.
    With `allow_negative=False` (the default) nothing goes below zero: a negative quantity
    counts as 0, a reserve takes at most what is available, a release or a ship at most
    what is reserved, and a count below the reserved units cuts the reservations to it.
    With `allow_negative=True` every quantity is applied as it is.
    """

    name = "stock"
    ops = frozenset({"receive", "reserve", "release", "ship", "count"})
    fields = (EventField("quantity", "integer"),)  # every op needs it
    measure = "available"
    count_column = "event_count"
    state_schema = state_schema_with(
        StructField("on_hand", LongType(), False),
        StructField("reserved", LongType(), False),
        StructField("available", LongType(), False),
    )

    def __init__(self, allow_negative: bool = False) -> None:
        self.allow_negative = allow_negative

    def fold_rows(self, key: str, events: list[dict[str, Any]]) -> dict[str, Any]:
        return self._state(key, 0, 0, events, None)

    def resume_rows(self, state: dict[str, Any], events: list[dict[str, Any]]) -> dict[str, Any]:
        return self._state(state["key"], state["on_hand"], state["reserved"], events, state)

    def _state(
        self,
        key: str,
        on_hand: int,
        reserved: int,
        events: list[dict[str, Any]],
        before: dict[str, Any] | None,
    ) -> dict[str, Any]:
        for event in events:
            op, quantity = event["op"], event["quantity"]
            if not self.allow_negative:
                quantity = max(quantity, 0)
                if op == "reserve":
                    quantity = min(quantity, on_hand - reserved)
                elif op in ("release", "ship"):
                    quantity = min(quantity, reserved)
            if op == "receive":
                on_hand += quantity
            elif op == "count":
                on_hand = quantity
                if not self.allow_negative:
                    reserved = min(reserved, on_hand)
            elif op == "reserve":
                reserved += quantity
            elif op == "release":
                reserved -= quantity
            else:  # ship: reserved units leave the warehouse
                reserved -= quantity
                on_hand -= quantity
        return {
            "key": key,
            "on_hand": on_hand,
            "reserved": reserved,
            "available": on_hand - reserved,
            **sequence_counts(events, before),
        }
