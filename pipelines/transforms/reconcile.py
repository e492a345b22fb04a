"""Compare freshly folded state with the table's current rows: what a MERGE will change."""

from __future__ import annotations

from functools import reduce

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from pipelines.folds import Fold
from pipelines.schema import DELETED, EVENTS_FOLDED, MODE, RESUME
from pipelines.transforms.fingerprint import row_hash, state_types


def with_change_kind(state_df: DataFrame, current_df: DataFrame | None, fold: Fold) -> DataFrame:
    """Per key of `state_df`: `change` (insert / update / delete / unchanged), the measure
    before/after, and the hashes of the row the MERGE replaces or deletes (`hash_before`) and
    of the row it writes (`hash_after`), NULL where there is none: what the state's
    fingerprint gains and loses (`pipelines.fingerprint`).

    `current_df` is the table as it is now (None when the table does not exist yet). The
    update test is the MERGE's own: some state column differs, NULL-safe. A row with
    `_deleted` set deletes its key.
    """
    folded = [c for c in (MODE, EVENTS_FOLDED) if c in state_df.columns]  # how, if told
    resumed = F.col(MODE) == RESUME if MODE in folded else F.lit(False)
    if DELETED not in state_df.columns:
        state_df = state_df.withColumn(DELETED, F.lit(False))
    if current_df is None:
        current_df = state_df.drop(DELETED).limit(0)
    before_df = current_df.select(
        "key",
        F.lit(True).alias("in_table"),
        *[F.col(c).alias(f"before_{c}") for c in fold.state_columns],
    )
    differs: Column = reduce(
        lambda acc, col: acc | col,
        [~F.col(c).eqNullSafe(F.col(f"before_{c}")) for c in fold.state_columns],
    )
    deleted, in_table = F.col(DELETED), F.col("in_table").isNotNull()
    change = (
        F.when(deleted & in_table, "delete")
        .when(deleted, "unchanged")
        .when(~in_table, "insert")
        .when(differs, "update")
        .otherwise("unchanged")
    )
    types = state_types(fold.state_schema)
    replaced = change.isin("update", "delete")
    written = change.isin("insert", "update")
    measure_before = F.col(f"before_{fold.measure}") if fold.measure else F.lit(None)
    measure_after = F.col(fold.measure) if fold.measure else F.lit(None)
    return state_df.join(before_df, on="key", how="left").select(
        "key",
        change.alias("change"),
        _cause(change, fold, resumed, state_df.columns).alias("cause"),
        measure_before.alias("measure_before"),
        measure_after.alias("measure_after"),
        (F.coalesce(measure_after, F.lit(0)) - F.coalesce(measure_before, F.lit(0))).alias(
            "measure_delta"
        ),
        F.when(replaced, row_hash(types, prefix="before_")).alias("hash_before"),
        F.when(written, row_hash(types)).alias("hash_after"),
        *folded,
    )


def _cause(change: Column, fold: Fold, resumed: Column, state_columns: list[str]) -> Column:
    """Why a key's stored state was wrong, where the state's columns tell.

    A key resumed with new events simply has them (`new_events`). Otherwise, for a fold that
    counts its events (`count_column`): more events now than the table counted: it missed
    events (a late one, say). Fewer: it applied some twice. As many but another state: they
    were applied out of order, or a conflicting copy won (`order_or_content`).
    """
    # A key deleted by its own events (the fold's `is_deleted`) was folded from some; a key
    # whose every event left it was folded from none.
    folded_none = F.col(EVENTS_FOLDED) == 0 if EVENTS_FOLDED in state_columns else F.lit(True)
    cause = (
        F.when(change == "insert", "new_key")
        .when((change == "delete") & folded_none, "no_events_left")
        .when(change == "delete", "deleted_by_event")
        .when(change == "unchanged", None)
        .when(resumed, "new_events")
    )
    if fold.count_column is not None:
        count, count_before = F.col(fold.count_column), F.col(f"before_{fold.count_column}")
        cause = cause.when(count > count_before, "missing_events").when(
            count < count_before, "duplicates_applied"
        )
    if fold.measure is None:
        return cause.otherwise("order_or_content")
    measure_differs = ~F.col(fold.measure).eqNullSafe(F.col(f"before_{fold.measure}"))
    return cause.when(measure_differs, "order_or_content").otherwise("bookkeeping")
