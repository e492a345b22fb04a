"""Fold the keys a run touched into their new state rows (contract section 7).

Given the events table's history and its changes since the version the state reflects, it
plans each touched key (`transforms.plan`), resumes or re-folds it (`transforms.fold`), and
deletes the rows of keys that have no events left. A full fold re-folds every key.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from pipelines.folds import Fold
from pipelines.io.events_table import BUCKET_COLUMN, key_bucket
from pipelines.transforms.fold import deleted_states, fold_states, resume_states
from pipelines.transforms.plan import inserted_events, touched_keys, with_fold_mode


def fold_all_keys(
    history_df: DataFrame, changes_df: DataFrame | None, state_df: DataFrame | None, fold: Fold
) -> DataFrame:
    """Every key of the history re-folded; touched keys left without events are deleted."""
    folded_df = fold_states(history_df, fold)
    if changes_df is None or state_df is None:
        return folded_df
    candidates_df = touched_keys(changes_df).filter("lost_events").select("key")
    return folded_df.unionByName(_gone(candidates_df, history_df, state_df, fold))


def fold_touched_keys(
    history_df: DataFrame,
    changes_df: DataFrame,
    state_df: DataFrame,
    fold: Fold,
    buckets: int,
    cached: list[DataFrame],
) -> DataFrame:
    """The keys `changes_df` names: resumed where they can be, re-folded otherwise.

    The plan (one row per touched key) is cached, and added to `cached` for the caller to
    release: its size lets Spark broadcast it to the scans of the history.
    """
    plan_df = with_fold_mode(touched_keys(changes_df), state_df, fold).cache()
    cached.append(plan_df)
    resume_keys_df = plan_df.filter("resume").select("key")
    refold_keys_df = plan_df.filter("NOT resume").select("key")

    new_events_df = inserted_events(changes_df).join(resume_keys_df, "key", "left_semi")
    stored_df = state_df.join(resume_keys_df, "key", "left_semi")
    resumed_df = resume_states(stored_df, new_events_df, fold)

    # At most `buckets` rows: the partitions of the history that hold a re-folded key.
    touched_buckets = [
        row[0]
        for row in refold_keys_df.select(key_bucket(F.col("key"), buckets)).distinct().collect()
    ]
    history_of_df = history_df.filter(F.col(BUCKET_COLUMN).isin(touched_buckets)).join(
        refold_keys_df, "key", "left_semi"
    )
    refolded_df = fold_states(history_of_df, fold)
    folded_df = resumed_df.unionByName(refolded_df)
    if plan_df.filter("lost_events").isEmpty():  # no event left a key: nothing to delete
        return folded_df
    lost_keys_df = plan_df.filter("lost_events").select("key")
    return folded_df.unionByName(_gone(lost_keys_df, history_of_df, state_df, fold))


def _gone(
    candidates_df: DataFrame, history_df: DataFrame, state_df: DataFrame, fold: Fold
) -> DataFrame:
    """Deletions for the candidates that have a state row and no event left in the history."""
    with_events_df = history_df.select("key").join(candidates_df, "key", "left_semi")
    gone_df = candidates_df.join(state_df.select("key"), "key", "left_semi").join(
        with_events_df.distinct(), "key", "left_anti"
    )
    return deleted_states(gone_df, fold)
