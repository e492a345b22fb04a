"""Deduplicate a batch against the events already accepted (contract sections 3 and 7).

The window of `dedupe` picks each `event_id`'s winner within the batch; here that winner
meets the stored copy, if any, by the same `precedence`:
- the same content: the batch copy is a `duplicate`;
- the batch copy comes first: it stays `valid` and `replaces` the stored one (whose raw
  text then goes to the quarantine);
- the stored copy comes first: the batch copy is a `conflicting_duplicate`.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from pipelines.transforms.dedupe import CONFLICT, precedence

STORED = "stored_"
BUCKET = "key_bucket"  # the events table's partition column (io.events_table uses this one)
STORED_BUCKET = "stored_key_bucket"  # the bucket holding the stored copy a batch copy met
QUARANTINE_COLUMNS = ("source_file", "raw", "event_id", "key", "reason")


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
