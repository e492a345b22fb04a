"""Fold keys into their state with grouped maps: from a whole history, or resumed.

Every output row is a state row (the fold's `state_schema`) plus how it was made: `_mode`
(`refold` or `resume`), `_events_folded` (the events the fold read for that key) and
`_deleted` (the key has no events left: its state row goes).
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import pairwise

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import BooleanType, LongType, StringType, StructField, StructType

from pipelines.folds import Fold
from pipelines.folds.base import key_boundaries
from pipelines.schema import DELETED, EVENTS_FOLDED, MODE, REFOLD, RESUME

SEQ_ORDER = [("seq", "ascending"), ("event_id", "ascending")]
# The stored state row each event of a resumed key carries, and whether it has one.
STORED_PREFIX = "_stored_"
HAS_STATE = "_has_state"
_EXTRAS = [
    StructField(MODE, StringType(), False),
    StructField(EVENTS_FOLDED, LongType(), False),
    StructField(DELETED, BooleanType(), False),
]


def folded_schema(fold: Fold) -> StructType:
    return StructType([*fold.state_schema.fields, *_EXTRAS])


def fold_states(events_df: DataFrame, fold: Fold) -> DataFrame:
    """One state row per key of `events_df`, folded from those events alone.

    Spark sorts each partition by key and `seq` (spilling to disk if it must), and the
    Python worker folds whole batches of keys with `Fold.fold_keys`: no Python call per key.
    """
    return _sorted_fold(events_df.select(*fold.event_columns), _SortedFolder(fold), fold)


def _sorted_fold(rows_df: DataFrame, folder: _SortedFolder, fold: Fold) -> DataFrame:
    """`folder` over `rows_df` shuffled by key and sorted by key and `seq` in partitions."""
    return (
        rows_df.repartition("key")
        .sortWithinPartitions("key", "seq", "event_id")
        .mapInArrow(folder.fold_batches, folded_schema(fold))
    )


class _SortedFolder:
    """Folds the batches of a partition sorted by key; a key may run over several batches.

    With `resume`, each row also carries its key's stored state row (the `_stored_` columns,
    NULL for a key without one), which the fold continues with the key's events.
    """

    def __init__(self, fold: Fold, resume: bool = False) -> None:
        self.fold = fold
        self.resume = resume

    def fold_batches(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        held: list[pa.RecordBatch] = []  # the last key seen, which the next batch may continue
        for batch in batches:
            if batch.num_rows == 0:
                continue
            keys = batch.column("key")
            last_key = keys[batch.num_rows - 1]
            if held and keys[0] == last_key and held[-1].column("key")[0] == last_key:
                held.append(batch)  # all one key, the one already held: keep reading
                continue
            # The rows before the batch's last key complete every key they hold.
            cut = pc.index(keys, last_key).as_py()
            complete = pa.Table.from_batches([*held, batch.slice(0, cut)])
            held = [batch.slice(cut)]
            if complete.num_rows:
                yield from self._folded(complete)
        if held:
            yield from self._folded(pa.Table.from_batches(held))

    def _folded(self, rows: pa.Table) -> Iterator[pa.RecordBatch]:
        if not self.resume:
            yield from self._fold_keys(rows, None, REFOLD)
            return
        stored = pc.fill_null(rows[HAS_STATE], False)
        with_state, without_state = rows.filter(stored), rows.filter(pc.invert(stored))
        if with_state.num_rows:  # continued from their stored rows
            yield from self._fold_keys(with_state, _stored_rows(with_state, self.fold), RESUME)
        if without_state.num_rows:  # no stored row: resumed from nothing
            yield from self._fold_keys(without_state, None, RESUME)

    def _fold_keys(
        self, rows: pa.Table, states: pa.Table | None, mode: str
    ) -> Iterator[pa.RecordBatch]:
        events = rows.select(list(self.fold.event_columns))
        counts = [end - start for start, end in pairwise(key_boundaries(events))]
        if states is None:
            folded = self.fold.fold_keys(events)
        else:
            folded = self.fold.resume_keys(states, events)
        if folded.num_rows != len(counts):
            raise ValueError(
                f"fold {self.fold.name} returned {folded.num_rows} rows for {len(counts)} keys"
            )
        yield from _tagged(folded, mode, counts, self.fold).to_batches()


def _stored_rows(rows: pa.Table, fold: Fold) -> pa.Table:
    """Each key's stored state row, from the `_stored_` columns of its first row."""
    firsts = key_boundaries(rows)[:-1]
    columns = [rows["key"], *(rows[STORED_PREFIX + name] for name in fold.state_columns)]
    return pa.Table.from_arrays(
        [column.take(firsts) for column in columns], names=["key", *fold.state_columns]
    )


def resume_states(state_df: DataFrame, new_events_df: DataFrame, fold: Fold) -> DataFrame:
    """One row per key of `new_events_df`: its stored row (if any) continued with them.

    Each event carries its key's stored row (a join), and the events are sorted by key and
    `seq` within partitions, as `fold_states` does, so the fold's `resume_keys` continues
    thousands of keys per Python call.
    """
    stored_df = state_df.select(
        "key",
        F.lit(True).alias(HAS_STATE),
        *[F.col(c).alias(STORED_PREFIX + c) for c in fold.state_columns],
    )
    rows_df = new_events_df.select(*fold.event_columns).join(stored_df, "key", "left")
    return _sorted_fold(rows_df, _SortedFolder(fold, resume=True), fold)


def deleted_states(keys_df: DataFrame, fold: Fold) -> DataFrame:
    """State rows that delete `keys_df`'s keys: keys whose every event has left them."""
    return keys_df.select(
        "key",
        *[F.lit(None).cast(f.dataType).alias(f.name) for f in fold.state_schema if f.name != "key"],
        F.lit(REFOLD).alias(MODE),
        F.lit(0).cast("long").alias(EVENTS_FOLDED),
        F.lit(True).alias(DELETED),
    )


def _tagged(state: pa.Table, mode: str, events: int | list[int], fold: Fold) -> pa.Table:
    """The fold's rows, cast to its declared schema (a mismatch fails here, naming the fold),
    with how they were made and whether each is a deletion."""
    rows = state.num_rows
    counts = events if isinstance(events, list) else [events] * rows
    deleted = fold.is_deleted(state)
    if deleted is None:
        deleted = pa.array([False] * rows, pa.bool_())
    return (
        conform(state, fold)
        .append_column(MODE, pa.array([mode] * rows, pa.string()))
        .append_column(EVENTS_FOLDED, pa.array(counts, pa.int64()))
        .append_column(DELETED, deleted)
    )


def conform(state: pa.Table, fold: Fold) -> pa.Table:
    """`state` as the fold's `arrow_schema`, or a `ValueError` saying how it differs."""
    schema = fold.arrow_schema
    if state.column_names != schema.names:
        raise ValueError(
            f"fold {fold.name} returned columns {state.column_names}, "
            f"its state_schema declares {schema.names}"
        )
    for field in schema:
        if not field.nullable and state[field.name].null_count:
            raise ValueError(
                f"fold {fold.name} returned NULL in {field.name}, which its state_schema "
                "declares NOT NULL"
            )
    try:
        return state.cast(schema)
    except pa.ArrowException as exc:
        raise ValueError(
            f"fold {fold.name} returned {state.schema} where its state_schema declares "
            f"{schema}: {exc}"
        ) from exc
