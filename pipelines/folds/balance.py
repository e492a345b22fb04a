"""The built-in `balance` fold: add, subtract and set a decimal balance (contract section 4)."""

from __future__ import annotations

from decimal import Decimal

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

    The balance is the amount of the last `set` (0 when there is none) plus the signed sum of
    the `add`/`subtract` events after it, in `seq` order; decimal arithmetic is exact.
    """

    name = "balance"
    ops = frozenset({"add", "subtract", "set"})
    measure = "balance"
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
        ordered = self.sort_events(events)
        ops = ordered["op"]
        amounts = ordered["amount"].cast(BALANCE_TYPE)
        set_positions = pc.indices_nonzero(pc.equal(ops, "set"))
        start = set_positions[-1].as_py() if len(set_positions) else -1
        opening = amounts[start].as_py() if start >= 0 else Decimal(0)
        tail_ops, tail_amounts = ops[start + 1 :], amounts[start + 1 :]
        signed = pc.if_else(pc.equal(tail_ops, "subtract"), pc.negate(tail_amounts), tail_amounts)
        movement = pc.sum(signed).as_py() or Decimal(0)
        seqs = ordered["seq"]
        last_seq = seqs[-1].as_py()
        distinct_seqs = pc.count_distinct(seqs).as_py()
        return pa.table(
            {
                "key": [ordered["key"][0].as_py()],
                "balance": pa.array([opening + movement], BALANCE_TYPE),
                "event_count": pa.array([ordered.num_rows], pa.int64()),
                "last_seq": pa.array([last_seq], pa.int64()),
                "missing_seq_count": pa.array([last_seq - distinct_seqs], pa.int64()),
                "last_event_time": ordered["event_time"][-1:].combine_chunks(),
            }
        )
