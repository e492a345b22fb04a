"""The built-in `balance` fold: add, subtract and set a decimal balance (contract section 4)."""

from __future__ import annotations

from decimal import Decimal, localcontext

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql.types import (
    DecimalType,
    StructField,
)

from pipelines.folds.base import EventField, Fold, key_boundaries, state_schema_with

BALANCE_TYPE = pa.decimal128(38, 9)


class BalanceFold(Fold):
    """Vectorised over the key's Arrow columns: no Python call per event.

    The balance is the amount of the last `set` (the opening balance when there is none)
    plus the signed sum of the `add`/`subtract` events after it, in `seq` order; decimal
    arithmetic is exact. Folding from scratch opens at 0; resuming opens at the stored row.
    """

    name = "balance"
    ops = frozenset({"add", "subtract", "set"})
    fields = (EventField("amount", "decimal"),)
    measure = "balance"
    count_column = "event_count"
    state_schema = state_schema_with(StructField("balance", DecimalType(38, 9), False))

    def fold_key(self, events: pa.Table) -> pa.Table:
        return self._fold(events, opening=Decimal(0), count=0, seen_seqs=0)

    def fold_keys(self, events: pa.Table) -> pa.Table:
        """Every key of a sorted batch at once: a few array operations for thousands of keys."""
        return self._fold_batch(events, None)

    def resume_keys(self, states: pa.Table, events: pa.Table) -> pa.Table:
        """Every key of a sorted batch continued from its stored row, all at once."""
        return self._fold_batch(events, states)

    def _fold_batch(self, events: pa.Table, states: pa.Table | None) -> pa.Table:
        """The keys of `events` folded from nothing, or continued from `states` (a stored row
        per key, in the same order)."""
        boundaries = np.array(key_boundaries(events), dtype=np.int64)
        starts, counts = boundaries[:-1], np.diff(boundaries)
        if states is not None and states.num_rows != len(starts):
            raise ValueError(
                f"resume_keys got {states.num_rows} stored rows for {len(starts)} keys"
            )
        rows = np.arange(events.num_rows)
        # Each row's key, numbered; and the position of each key's last `set` (-1: none).
        group = np.repeat(np.arange(len(starts)), counts)
        ops = events["op"]
        is_set = pc.equal(ops, "set").to_numpy(zero_copy_only=False)
        last_set = np.maximum.reduceat(np.where(is_set, rows, -1), starts)
        amounts = events["amount"].cast(BALANCE_TYPE)
        signed = pc.if_else(pc.equal(ops, "subtract"), pc.negate(amounts), amounts)
        after_set = pa.array(rows > last_set[group])
        moving = pc.if_else(after_set, signed, pa.scalar(Decimal(0), BALANCE_TYPE))
        movements = (
            pa.table({"group": group, "moving": moving})
            .group_by("group", use_threads=False)
            .aggregate([("moving", "sum")])["moving_sum"]
            .to_pylist()
        )
        # Without a `set`, a key opens at its stored balance (0 when folded from nothing).
        if states is None:
            stored = [Decimal(0)] * len(starts)
            count_before = seen_before = np.zeros(len(starts), dtype=np.int64)
        else:
            stored = states["balance"].to_pylist()
            count_before = states["event_count"].to_numpy()
            # Every resumed seq follows the stored last_seq, so none of them was seen before.
            seen_before = states["last_seq"].to_numpy() - states["missing_seq_count"].to_numpy()
        openings = [
            amounts[int(p)].as_py() if p >= 0 else before
            for p, before in zip(last_set.tolist(), stored, strict=True)
        ]
        with localcontext() as exact:
            exact.prec = 60  # Python's default 28 digits would round a 38-digit balance
            balances = [o + m for o, m in zip(openings, movements, strict=True)]
        ends = boundaries[1:] - 1
        seqs = events["seq"].to_numpy()
        new_seq = np.ones(events.num_rows, dtype=np.int64)
        new_seq[1:] = seqs[1:] != seqs[:-1]
        new_seq[starts] = 1
        distinct_seqs = np.add.reduceat(new_seq, starts)
        last_seqs = seqs[ends]
        return pa.table(
            {
                "key": events["key"].take(starts),
                "balance": pa.array(balances, BALANCE_TYPE),
                "event_count": pa.array(count_before + counts, pa.int64()),
                "last_seq": pa.array(last_seqs, pa.int64()),
                "missing_seq_count": pa.array(last_seqs - seen_before - distinct_seqs, pa.int64()),
                "last_event_time": events["event_time"].take(ends),
            }
        )

    def resume(self, state: pa.Table, events: pa.Table) -> pa.Table:
        row = state.to_pylist()[0]
        # Every new seq follows the stored last_seq, so none of them was seen before.
        seen = row["last_seq"] - row["missing_seq_count"]
        return self._fold(events, row["balance"], row["event_count"], seen)

    def _fold(self, events: pa.Table, opening: Decimal, count: int, seen_seqs: int) -> pa.Table:
        ordered = events  # sorted by `seq` before the fold is called
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
