"""Fold keys into their state with grouped maps: from a whole history, or resumed.

Every output row is a state row (the fold's `state_schema`) plus how it was made: `_mode`
(`refold` or `resume`), `_events_folded` (the events the fold read for that key) and
`_deleted` (the key has no events left: its state row goes).
"""

from __future__ import annotations

import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import BooleanType, LongType, StringType, StructField, StructType

from pipelines.folds import EVENT_COLUMNS, Fold

MODE, EVENTS_FOLDED, DELETED = "_mode", "_events_folded", "_deleted"
REFOLD, RESUME = "refold", "resume"
_EXTRAS = [
    StructField(MODE, StringType(), False),
    StructField(EVENTS_FOLDED, LongType(), False),
    StructField(DELETED, BooleanType(), False),
]


def folded_schema(fold: Fold) -> StructType:
    return StructType([*fold.state_schema.fields, *_EXTRAS])


def fold_states(events_df: DataFrame, fold: Fold) -> DataFrame:
    """One state row per key of `events_df`, folded from those events alone."""

    def fold_group(events: pa.Table) -> pa.Table:
        return _tagged(fold.fold_key(events), REFOLD, events.num_rows)

    return (
        events_df.select(*EVENT_COLUMNS)
        .groupBy("key")
        # A one-argument function: Spark passes (key, table) to functions that take two.
        .applyInArrow(fold_group, folded_schema(fold))
    )


def resume_states(state_df: DataFrame, new_events_df: DataFrame, fold: Fold) -> DataFrame:
    """One row per key of `new_events_df`: its stored row (if any) continued with them."""
    state_columns = [f.name for f in fold.state_schema.fields]

    def resume_group(state: pa.Table, events: pa.Table) -> pa.Table:
        if state.num_rows == 0:
            return _tagged(fold.fold_key(events), RESUME, events.num_rows)
        return _tagged(fold.resume(state, events), RESUME, events.num_rows)

    return (
        state_df.select(*state_columns)
        .groupBy("key")
        .cogroup(new_events_df.select(*EVENT_COLUMNS).groupBy("key"))
        .applyInArrow(resume_group, folded_schema(fold))
    )


def deleted_states(keys_df: DataFrame, fold: Fold) -> DataFrame:
    """State rows that delete `keys_df`'s keys: keys whose every event has left them."""
    return keys_df.select(
        "key",
        *[F.lit(None).cast(f.dataType).alias(f.name) for f in fold.state_schema if f.name != "key"],
        F.lit(REFOLD).alias(MODE),
        F.lit(0).cast("long").alias(EVENTS_FOLDED),
        F.lit(True).alias(DELETED),
    )


def _tagged(state: pa.Table, mode: str, events: int) -> pa.Table:
    rows = state.num_rows
    return (
        state.append_column(MODE, pa.array([mode] * rows, pa.string()))
        .append_column(EVENTS_FOLDED, pa.array([events] * rows, pa.int64()))
        .append_column(DELETED, pa.array([False] * rows, pa.bool_()))
    )
