"""The quarantine table: every rejected record, insert-only by its raw record's identity."""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession

from pipelines.io.commits import MergeResult, merge_into
from pipelines.io.tables import ensure_table
from pipelines.schema import QUARANTINE_SCHEMA


def merge_quarantine(spark: SparkSession, uri: str, quarantined_df: DataFrame) -> MergeResult:
    """Insert the records not quarantined before (by `record_key`); returns the counts.

    Insert-only, so a rerun or a retry after a concurrent commit adds nothing twice.
    """
    rows_df = quarantined_df.select(*[f.name for f in QUARANTINE_SCHEMA.fields])
    return merge_into(
        spark,
        uri,
        "quarantine MERGE",
        lambda: ensure_table(spark, uri, QUARANTINE_SCHEMA),
        rows_df,
        "t.record_key = s.record_key",
        lambda merge: merge.whenNotMatchedInsertAll(),
    )
