"""What a redrive (contract section 11) makes of each quarantined record it re-read: its
`redrive_outcome`, `admitted`, `duplicate`, or the reason it is still quarantined for."""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from pipelines.schema import ADMITTED, DUPLICATE, REDRIVE_OUTCOME, REDRIVEN_BY
from pipelines.transforms.dedupe import CONFLICT


def redrive_outcomes(
    parsed_df: DataFrame, outcomes_df: DataFrame, stored_df: DataFrame | None, run_id: str
) -> DataFrame:
    """`record_key`, `redriven_by` and `redrive_outcome` of every redriven record.

    `parsed_df` holds the re-read records (`record_id`, `record_key`, `event_id`,
    `source_file`, `raw`, `reason`), `outcomes_df` the dedupe outcome of each valid one, and
    `stored_df` the events table the batch was deduplicated against. A record the window
    made the winner is admitted. So is a duplicate that is itself the stored copy (same file
    and text, the first such record of its id): an earlier attempt of this redrive stored
    it, then stopped before recording outcomes; the rerun records what that attempt did.
    """
    records = parsed_df.select(
        "record_id", "record_key", "event_id", "source_file", "raw", "reason"
    )
    decided = records.join(outcomes_df.select("record_id", "outcome"), "record_id", "left")
    if stored_df is None:
        stored_copy = F.lit(False)
    else:
        ids = decided.filter(F.col("outcome") == DUPLICATE).select("event_id")
        copies = stored_df.select(
            "event_id",
            F.col("source_file").alias("_stored_file"),
            F.col("raw").alias("_stored_raw"),
        ).join(F.broadcast(ids), "event_id", "left_semi")
        decided = decided.join(F.broadcast(copies), "event_id", "left")
        stored_copy = (
            (F.col("outcome") == DUPLICATE)
            & (F.col("_stored_file") == F.col("source_file"))
            & F.col("_stored_raw").eqNullSafe(F.col("raw"))
        )
    by_id = Window.partitionBy("event_id")
    first_stored_copy = stored_copy & (
        F.row_number().over(by_id.orderBy((~stored_copy).cast("int"), "record_key")) == 1
    )
    won_here = F.max((F.col("outcome") == "valid").cast("int")).over(by_id) == 1
    outcome = (
        F.when(F.col("reason").isNotNull(), F.col("reason"))
        .when(F.col("outcome") == CONFLICT, F.lit(CONFLICT))
        .when(F.col("outcome") == "valid", F.lit(ADMITTED))
        .when(first_stored_copy & ~won_here, F.lit(ADMITTED))
        .otherwise(F.lit(DUPLICATE))
    )
    return decided.select(
        "record_key", F.lit(run_id).alias(REDRIVEN_BY), outcome.alias(REDRIVE_OUTCOME)
    )


def changed_outcomes(outcomes_df: DataFrame, quarantine_df: DataFrame) -> DataFrame:
    """The outcomes that differ from what the quarantine rows (`quarantine_df`, as the
    table stands) record: what the redrive's MERGE has to set."""
    recorded = F.col(REDRIVE_OUTCOME) if REDRIVE_OUTCOME in quarantine_df.columns else F.lit(None)
    current = quarantine_df.select("record_key", recorded.cast("string").alias("_recorded"))
    return (
        outcomes_df.join(current, "record_key")
        .filter(~F.col(REDRIVE_OUTCOME).eqNullSafe(F.col("_recorded")))
        .drop("_recorded")
    )
