"""The events table: every valid, deduplicated event ever accepted (contract section 7).

It is partitioned by a key bucket (`schema.key_bucket`), so re-folding a few keys reads only
their buckets; the bucket count is fixed when the table is created and kept in its
properties. Each row keeps what a later conflict needs to quarantine it: its raw text and
source file.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, SparkSession

from pipelines.folds import Fold
from pipelines.folds.base import COMMON_NAMES, INGESTED_AT
from pipelines.io.commits import MergeResult, merge_into
from pipelines.io.tables import ensure_table
from pipelines.schema import BUCKET, events_schema

BUCKETS_PROPERTY = "backfill.keyBuckets"


def _stats_columns(fold: Fold) -> str:
    """Delta keeps min/max statistics of these only: the raw text and source file of every
    event (and JSON documents) are never filtered on, and their statistics cost a sixth of
    the table's write."""
    own = [f.name for f in fold.fields if f.type != "json"]
    return ",".join([*COMMON_NAMES, *own, INGESTED_AT.name, "run_id"])


def merge_events(
    spark: SparkSession,
    uri: str,
    rows_df: DataFrame,
    buckets: int,
    fold: Fold,
    replaces_stored: Column | None,
) -> MergeResult:
    """Insert events not stored yet; replace a stored copy (`t`) where the incoming one (`s`)
    `replaces_stored`. With `replaces_stored` None the MERGE only inserts: it neither reads
    the source twice nor rewrites a stored file, for a batch that replaces nothing.

    The MERGE itself decides, by the same precedence as the dedupe window, so a retry after a
    concurrent commit (or a rerun) never stores an event twice or lets an older copy win.
    """

    properties = {
        BUCKETS_PROPERTY: str(buckets),
        "delta.dataSkippingStatsColumns": _stats_columns(fold),
    }
    return merge_into(
        spark,
        uri,
        "events MERGE",
        lambda: ensure_table(
            spark, uri, events_schema(fold), partition_by=BUCKET, properties=properties
        ),
        rows_df,
        "t.event_id = s.event_id",
        lambda merge: (
            merge
            if replaces_stored is None
            else merge.whenMatchedUpdateAll(condition=replaces_stored)
        ).whenNotMatchedInsertAll(),
    )
