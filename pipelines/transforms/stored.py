"""Deduplicate a batch against the events already accepted (contract sections 3 and 7).

The window of `dedupe` picks each `event_id`'s winner within the batch; here that winner
meets the stored copy, if any, by the same `precedence`:
- the same content: the batch copy is a `duplicate`;
- the batch copy comes first: it stays `valid` and `replaces` the stored one (whose raw
  text then goes to the quarantine);
- the stored copy comes first: the batch copy is a `conflicting_duplicate`.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from pipelines.folds import Fold
from pipelines.schema import BUCKET, event_row_columns, key_bucket
from pipelines.transforms.dedupe import CONFLICT, precedence

STORED = "stored_"
STORED_BUCKET = "stored_key_bucket"  # the bucket holding the stored copy a batch copy met


def with_stored_outcome(
    outcomes_df: DataFrame,
    stored_df: DataFrame | None,
    small_batch: bool,
    content: tuple[str, ...],
) -> DataFrame:
    """`outcomes_df` with outcomes decided against `stored_df`, plus a `replaces` flag.

    Only the stored rows whose `event_id` the batch names take part: with `small_batch` the
    batch's ids are broadcast, so stored events are scanned, never shuffled.
    """
    if stored_df is None:
        return outcomes_df.select(
            "*", F.lit(False).alias("replaces"), F.lit(None).cast("int").alias(STORED_BUCKET)
        )
    ids_df = outcomes_df.filter(F.col("outcome") == "valid").select("event_id")
    hits_df = stored_df.select(
        "event_id",
        F.col(BUCKET).alias(STORED_BUCKET),
        *[F.col(c).alias(STORED + c) for c in (*content, "ingested_at")],
    ).join(F.broadcast(ids_df) if small_batch else ids_df, "event_id", "left_semi")
    joined = outcomes_df.join(F.broadcast(hits_df) if small_batch else hits_df, "event_id", "left")
    is_hit = (F.col("outcome") == "valid") & F.col(STORED + "key").isNotNull()
    same = F.struct(*content).eqNullSafe(F.struct(*[STORED + c for c in content]))
    batch_first = precedence(content) < precedence(content, STORED)
    outcome = (
        F.when(~is_hit, F.col("outcome"))
        .when(same, F.lit("duplicate"))
        .when(batch_first, F.lit("valid"))
        .otherwise(F.lit(CONFLICT))
    )
    return joined.select(
        *[c for c in outcomes_df.columns if c != "outcome"],
        outcome.alias("outcome"),
        (is_hit & ~same & batch_first).alias("replaces"),
        STORED_BUCKET,
    )


def displaced_copies(stored_df: DataFrame, outcomes_df: DataFrame, buckets: list[int]) -> DataFrame:
    """Stored events a newer copy of this batch replaces: quarantined as conflict losers.

    `buckets` are the partitions that hold them, so only those are read (raw text included).
    """
    replaced_ids = outcomes_df.filter("replaces").select("event_id")
    in_buckets = stored_df.filter(F.col(BUCKET).isin(buckets))
    return in_buckets.join(F.broadcast(replaced_ids), "event_id", "left_semi").select(
        "source_file", "raw", "event_id", "key", F.lit(CONFLICT).alias("reason")
    )


def replaces_stored(content: tuple[str, ...], stored: str = "t.", incoming: str = "s.") -> Column:
    """Whether the incoming copy of an event replaces the stored one: it differs, and comes
    first by the dedupe window's `precedence`. The events table's MERGE condition."""
    stored_content = F.struct(*[F.col(f"{stored}{c}") for c in content])
    incoming_content = F.struct(*[F.col(f"{incoming}{c}") for c in content])
    return ~incoming_content.eqNullSafe(stored_content) & (
        precedence(content, incoming) < precedence(content, stored)
    )


def as_event_rows(winners_df: DataFrame, run_id: str, buckets: int, fold: Fold) -> DataFrame:
    """Accepted records (typed fields, `source_file`, `raw`) as rows of the events table."""
    return winners_df.withColumn(BUCKET, key_bucket(F.col("key"), buckets)).select(
        *[c for c in event_row_columns(fold) if c != "run_id"], F.lit(run_id).alias("run_id")
    )
