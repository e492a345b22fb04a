"""Balance events: `add`, `subtract` and `set` with an `amount`, for the `balance` fold."""

from __future__ import annotations

import random
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar

from pipelines.generate.base import Delivered, EventKind

GARBAGE_KINDS = (
    "truncated",
    "not_json",
    "missing_field",
    "bad_seq",
    "unknown_op",
    "amount_out_of_range",
    "bad_event_time",
    "not_an_object",
)


@dataclass(frozen=True)
class Event(Delivered):
    """A balance event: an amount, written as a JSON number or as a string."""

    amount: Decimal
    amount_as_string: bool = False

    def payload_json(self) -> str:
        amount = f'"{self.amount}"' if self.amount_as_string else str(self.amount)
        return f',"amount":{amount}'

    def payload_value(self) -> Any:
        return self.amount


class BalanceEvents(EventKind):
    """`set` first, then mostly `add` and `subtract`, amounts with cents."""

    event_class = Event
    key_prefix = "acct"
    column = "amount"
    parquet_type = "decimal"
    garbage_kinds = GARBAGE_KINDS
    unknown_ops = ("multiply", "ADD", "")
    valid_payload: ClassVar[dict[str, Any]] = {"op": "add", "amount": "1.00"}

    def content(self, rng: random.Random, seq: int) -> dict[str, Any]:
        return {"op": _pick_op(rng, seq), "amount": Decimal(rng.randint(1, 5_000_000)).scaleb(-2)}

    def style(self, rng: random.Random) -> dict[str, Any]:
        return {"amount_as_string": rng.random() < 0.5}

    def conflicting(self, rng: random.Random, event: Event) -> dict[str, Any]:
        return {"amount": event.amount + Decimal(rng.randint(1, 999)).scaleb(-2)}


def _pick_op(rng: random.Random, seq: int) -> str:
    if seq == 1:
        return "set"
    roll = rng.random()
    return "set" if roll < 0.03 else "subtract" if roll < 0.35 else "add"
