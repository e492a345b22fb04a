"""The built-in `balance` fold: add, subtract and set a decimal balance (contract section 4)."""

from __future__ import annotations

from decimal import Decimal, localcontext

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql.types import (
    DecimalType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from pipelines.folds.base import Fold

BALANCE_TYPE = pa.decimal128(38, 9)


class BalanceFold(Fold):
    """Vectorised over the key's Arrow columns: no Python call per event.

    The balance is the amount of the last `set` (the opening balance when there is none)
    plus the signed sum of the `add`/`subtract` events after it, in `seq` order; decimal
    arithmetic is exact. Folding from scratch opens at 0; resuming opens at the stored row.
    """

    name = "balance"
    ops = frozenset({"add", "subtract", "set"})
    measure = "balance"
    can_resume = True
    state_schema = StructType(
        [
            StructField("key", StringType(), False),
            StructField("balance", DecimalType(38, 9), False),
            StructField("event_count", LongType(), False),
            StructField("last_seq", LongType(), False),
            StructField("missing_seq_count", LongType(), False),
            StructField("last_event_time", TimestampType(), True),
        ]
    )

    def fold_key(self, events: pa.Table) -> pa.Table:
        return self._fold(events, opening=Decimal(0), count=0, seen_seqs=0)

    def resume(self, state: pa.Table, events: pa.Table) -> pa.Table:
        row = state.to_pylist()[0]
        # Every new seq follows the stored last_seq, so none of them was seen before.
        seen = row["last_seq"] - row["missing_seq_count"]
        return self._fold(events, row["balance"], row["event_count"], seen)

    def _fold(self, events: pa.Table, opening: Decimal, count: int, seen_seqs: int) -> pa.Table:
        ordered = self.sort_events(events)
        ops = ordered["op"]
        amounts = ordered["amount"].cast(BALANCE_TYPE)
        set_positions = pc.indices_nonzero(pc.equal(ops, "set"))
        start = set_positions[-1].as_py() if len(set_positions) else -1
        if start >= 0:
            opening = amounts[start].as_py()
        tail_ops, tail_amounts = ops[start + 1 :], amounts[start + 1 :]
        signed = pc.if_else(pc.equal(tail_ops, "subtract"), pc.negate(tail_amounts), tail_amounts)
        movement = pc.sum(signed).as_py() or Decimal(0)
        with localcontext() as exact:
            exact.prec = 60  # Python's default 28 digits would round a 38-digit balance
            balance = opening + movement
        seqs = ordered["seq"]
        last_seq = seqs[-1].as_py()
        distinct_seqs = seen_seqs + pc.count_distinct(seqs).as_py()
        return pa.table(
            {
                "key": [ordered["key"][0].as_py()],
                "balance": pa.array([balance], BALANCE_TYPE),
                "event_count": pa.array([count + ordered.num_rows], pa.int64()),
                "last_seq": pa.array([last_seq], pa.int64()),
                "missing_seq_count": pa.array([last_seq - distinct_seqs], pa.int64()),
                "last_event_time": ordered["event_time"][-1:].combine_chunks(),
            }
        )
