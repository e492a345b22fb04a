"""Per-key differences between two versions of a state table, as pure DataFrame steps.

Two ways to the same answer: net the change data feed of the commits in between
(`net_change_feed`), or join the two snapshots (`compare_snapshots`). Both return one row per
key whose state differs: `key`, `change` (insert / update / delete), `before`, `after`
(structs of the state columns, NULL when the key did not exist) and `delta` of the measure.
`pipelines.diffing` nets the same feed held in Arrow, without Spark.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from pipelines.diffing import AFTER_TYPES, BEFORE_TYPES


def compare_snapshots(
    before_df: DataFrame, after_df: DataFrame, state_columns: list[str], measure: str | None
) -> DataFrame:
    """Full outer join of two versions on `key`; keys whose state is equal are left out."""
    before = before_df.select("key", F.struct(*state_columns).alias("before"))
    after = after_df.select("key", F.struct(*state_columns).alias("after"))
    return _finish(before.join(after, on="key", how="full_outer"), state_columns, measure)


def net_change_feed(cdf_df: DataFrame, state_columns: list[str], measure: str | None) -> DataFrame:
    """Collapse a change feed to each key's state before its first and after its last commit.

    Works across RESTORE, which the feed shows as whole files deleted and re-inserted.
    """
    by_key = Window.partitionBy("key")
    rows = cdf_df.select(
        "key",
        "_change_type",
        "_commit_version",
        F.struct(*state_columns).alias("state"),
        F.min("_commit_version").over(by_key).alias("first_version"),
        F.max("_commit_version").over(by_key).alias("last_version"),
    )
    is_first_before = (F.col("_commit_version") == F.col("first_version")) & F.col(
        "_change_type"
    ).isin(*BEFORE_TYPES)
    is_last_after = (F.col("_commit_version") == F.col("last_version")) & F.col(
        "_change_type"
    ).isin(*AFTER_TYPES)
    netted = rows.groupBy("key").agg(
        F.first(F.when(is_first_before, F.col("state")), ignorenulls=True).alias("before"),
        F.first(F.when(is_last_after, F.col("state")), ignorenulls=True).alias("after"),
    )
    return _finish(netted, state_columns, measure)


def _finish(joined: DataFrame, state_columns: list[str], measure: str | None) -> DataFrame:
    change = (
        F.when(F.col("before").isNull(), "insert")
        .when(F.col("after").isNull(), "delete")
        .otherwise("update")
    )
    return joined.filter(~F.col("before").eqNullSafe(F.col("after"))).select(
        "key",
        change.alias("change"),
        "before",
        "after",
        _delta(measure).alias("delta"),
    )


def _delta(measure: str | None) -> Column:
    if measure is None:
        return F.lit(None)
    before = F.coalesce(F.col(f"before.{measure}"), F.lit(0))
    after = F.coalesce(F.col(f"after.{measure}"), F.lit(0))
    return after - before
