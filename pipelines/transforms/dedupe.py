"""Deduplicate valid events by `event_id` with window functions (contract section 3).

Every copy of an event gets an `outcome`:
- `valid`: the winning copy, the one with the latest `ingested_at` (ties broken by a
  content hash, then source file and raw text, so the choice is total and deterministic);
- `duplicate`: same content as the winner, dropped and counted;
- `quarantined` with reason `conflicting_duplicate`: different content, a loser.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

CONTENT_FIELDS = ("key", "seq", "event_time", "op", "amount")


def content_hash() -> Column:
    """SHA-256 of the typed event content; `ingested_at` is not content, only a copy's age."""
    parts = [F.coalesce(F.col(c).cast("string"), F.lit("\u0000")) for c in CONTENT_FIELDS]
    return F.sha2(F.concat_ws("\u0001", *parts), 256)


def with_dedupe_outcome(valid_df: DataFrame) -> DataFrame:
    """Add `outcome` and `reason` to every valid copy; the input keeps all copies."""
    by_event = Window.partitionBy("event_id")
    copy_order = by_event.orderBy(
        F.col("ingested_at").desc_nulls_last(),
        F.col("content_hash").desc(),
        F.col("source_file"),
        F.col("raw"),
    )
    winner_hash = F.first("content_hash").over(
        copy_order.rowsBetween(Window.unboundedPreceding, Window.unboundedFollowing)
    )
    ranked_df = valid_df.withColumn("content_hash", content_hash()).select(
        "*",
        F.row_number().over(copy_order).alias("copy_rank"),
        winner_hash.alias("winner_hash"),
    )
    outcome = (
        F.when(F.col("copy_rank") == 1, F.lit("valid"))
        .when(F.col("content_hash") == F.col("winner_hash"), F.lit("duplicate"))
        .otherwise(F.lit("quarantined"))
    )
    return ranked_df.select(
        *[c for c in valid_df.columns if c != "reason"],
        outcome.alias("outcome"),
        F.when(outcome == "quarantined", F.lit("conflicting_duplicate"))
        .cast("string")
        .alias("reason"),
    )


def classify_records(validated_df: DataFrame) -> DataFrame:
    """Every record read, with `outcome` in (`valid`, `duplicate`, `quarantined`) and `reason`."""
    invalid_df = validated_df.filter(F.col("reason").isNotNull()).withColumn(
        "outcome", F.lit("quarantined")
    )
    deduped_df = validated_df.filter(F.col("reason").isNull()).transform(with_dedupe_outcome)
    return invalid_df.unionByName(deduped_df)
