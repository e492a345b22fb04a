"""Which keys a run folds, and how (contract section 7).

The change feed of the events table since the version the state reflects names the touched
keys. A key whose changes are all inserts following its stored `last_seq` (or that has no
stored row, for a fold that never deletes) resumes from its state with the new events only;
any other touched key (a late
`seq`, a replaced event, an event that left it for another key) is re-folded from its whole
history. Untouched keys take no part. `last_seq` is bookkeeping every fold's state keeps
(`folds.base.BOOKKEEPING`).
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from pipelines.folds import Fold

INSERT = "insert"
REMOVALS = ("update_preimage", "delete")


def touched_keys(changes_df: DataFrame) -> DataFrame:
    """One row per key the changes name: `first_new_seq`, `only_inserts`, and `lost_events`
    (an event left it: only such a key can end with no events, its state row deleted).

    A replaced event's pre-image names the key it leaves, its post-image the key it joins.
    """
    change = F.col("_change_type")
    return changes_df.groupBy("key").agg(
        F.min(F.when(change == INSERT, F.col("seq"))).alias("first_new_seq"),
        F.bool_and(change == INSERT).alias("only_inserts"),
        F.bool_or(change.isin(*REMOVALS)).alias("lost_events"),
    )


def with_fold_mode(touched_df: DataFrame, state_df: DataFrame | None, fold: Fold) -> DataFrame:
    """`key`, `resume` (True where the key can continue from its stored row, or has none) and
    `lost_events`."""
    if state_df is None:
        return touched_df.select("key", F.col("only_inserts").alias("resume"), "lost_events")
    stored_df = state_df.select("key", F.col("last_seq").alias("stored_last_seq"))
    follows = F.coalesce(F.col("first_new_seq") > F.col("stored_last_seq"), F.lit(False))
    if not fold.can_resume:
        follows = F.lit(False)
    # A fold that deletes keeps no row for a deleted key, though the key has a history:
    # only a stored row tells that the new events are all there is to fold.
    no_row = F.lit(False) if fold.deletes else F.col("stored_last_seq").isNull()
    resume = F.col("only_inserts") & (no_row | follows)
    return touched_df.join(stored_df, "key", "left").select(
        "key", resume.alias("resume"), "lost_events"
    )


def inserted_events(changes_df: DataFrame) -> DataFrame:
    return changes_df.filter(F.col("_change_type") == INSERT)
