"""Stage 5, fold: the keys the plan's changes touched (every key when full) folded into new
state rows: resumed from their stored row where they can be, re-folded from their history
otherwise, and deleted when no event is left to them. Each row gets the change it makes."""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from pipelines.fingerprint import Fingerprint
from pipelines.folds import Fold
from pipelines.io.reports import changes_path, write_changes
from pipelines.io.tables import read_version
from pipelines.report import KeyChanges
from pipelines.run.accounting import step, summarize_changes
from pipelines.run.context import RunContext
from pipelines.run.plan import Plan
from pipelines.run.preflight import Tables
from pipelines.schema import BUCKET, key_bucket
from pipelines.transforms.fold import deleted_states, fold_states, resume_states
from pipelines.transforms.plan import inserted_events, touched_keys, with_fold_mode
from pipelines.transforms.reconcile import with_change_kind


@dataclass(frozen=True)
class Folded:
    state_df: DataFrame  # the rows to MERGE, persisted
    keys: KeyChanges
    # What the MERGE does to the fingerprint of the state version the fold read.
    fingerprint_change: Fingerprint


def fold(ctx: RunContext, tables: Tables, plan: Plan) -> Folded:
    assert plan.history_df is not None
    spark, request = ctx.spark, ctx.request
    current_df = None
    if tables.state_version is not None:
        current_df = read_version(spark, request.table, tables.state_version)
    with step(spark, request.run_id, "fold"):
        if plan.mode == "full":
            state_df = fold_all_keys(plan.history_df, plan.changes_df, current_df, ctx.fold)
        else:
            assert plan.changes_df is not None and current_df is not None
            state_df = fold_touched_keys(
                ctx, plan.history_df, plan.changes_df, current_df, tables.buckets
            )
        state_df = ctx.persist(state_df)
        changes_df = ctx.persist(state_df.transform(with_change_kind, current_df, ctx.fold))
        keys, fingerprint_change = summarize_changes(changes_df, ctx.fold.measure)
    if not request.dry_run:
        ctx.progress(_folded_line(keys))
    elif request.report_path:
        write_changes(changes_df, changes_path(request.report_path))
    return Folded(state_df, keys, fingerprint_change)


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
    ctx: RunContext,
    history_df: DataFrame,
    changes_df: DataFrame,
    state_df: DataFrame,
    buckets: int,
) -> DataFrame:
    """The keys `changes_df` names: resumed where they can be, re-folded otherwise.

    The plan (one row per touched key) is cached until the run ends: its size lets Spark
    broadcast it to the scans of the history.
    """
    fold = ctx.fold
    plan_df = ctx.persist(with_fold_mode(touched_keys(changes_df), state_df, fold))
    resume_keys_df = plan_df.filter("resume").select("key")
    refold_keys_df = plan_df.filter("NOT resume").select("key")

    new_events_df = inserted_events(changes_df).join(resume_keys_df, "key", "left_semi")
    stored_df = state_df.join(resume_keys_df, "key", "left_semi")
    resumed_df = resume_states(stored_df, new_events_df, fold)

    # At most `buckets` + 1 rows: the partitions of the history that hold a re-folded key,
    # and whether any key lost events (it may have none left: a deletion).
    refolded_bucket = F.when(~F.col("resume"), key_bucket(F.col("key"), buckets))
    plan_rows = (
        plan_df.groupBy(refolded_bucket.alias("bucket"))
        .agg(F.max(F.col("lost_events").cast("int")).alias("lost"))
        .collect()
    )
    touched_buckets = sorted(r["bucket"] for r in plan_rows if r["bucket"] is not None)
    history_of_df = history_df.filter(F.col(BUCKET).isin(touched_buckets)).join(
        refold_keys_df, "key", "left_semi"
    )
    refolded_df = fold_states(history_of_df, fold)
    folded_df = resumed_df.unionByName(refolded_df)
    if not any(r["lost"] for r in plan_rows):  # no event left a key: nothing to delete
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


def _folded_line(keys: KeyChanges) -> str:
    return (
        f"folded {keys.total:,} touched keys: {keys.resumed:,} resumed with "
        f"{keys.new_events_folded:,} new events, {keys.refolded:,} re-folded from "
        f"{keys.history_events_read:,} events of their history; {keys.inserted:,} new, "
        f"{keys.updated:,} to correct, {keys.deleted:,} to delete"
    )
