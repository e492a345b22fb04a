"""Fold each key's valid, deduplicated events into its state with a grouped map."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from pipelines.folds import EVENT_COLUMNS, Fold


def fold_states(events_df: DataFrame, fold: Fold) -> DataFrame:
    """One state row per key; the fold orders each key's events by `seq` itself."""
    return (
        events_df.filter(F.col("outcome") == "valid")
        .select(*EVENT_COLUMNS)
        .groupBy("key")
        # A one-argument function: Spark passes (key, table) to functions that take two.
        .applyInArrow(lambda events: fold.fold_key(events), fold.state_schema)
    )
