"""The quarantine table: every rejected record, insert-only by its raw record's identity; and
what a redrive (contract section 11) reads from it and records in it."""

from __future__ import annotations

from functools import reduce

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from pipelines.io.commits import MergeResult, merge_into, retry_conflicts
from pipelines.io.tables import ensure_table, read_version
from pipelines.schema import (
    ADMITTED,
    DUPLICATE,
    QUARANTINE_SCHEMA,
    RAW,
    REDRIVE_OUTCOME,
    REDRIVE_SCHEMA,
    REDRIVEN_BY,
    SOURCE_FILE,
)


def merge_quarantine(spark: SparkSession, uri: str, quarantined_df: DataFrame) -> MergeResult:
    """Insert the records not quarantined before (by `record_key`); returns the counts.

    Insert-only, so a rerun or a retry after a concurrent commit adds nothing twice. The
    columns are named, so a table a redrive gave its two columns takes rows without them
    (NULL: never redriven).
    """
    columns = [f.name for f in QUARANTINE_SCHEMA.fields]
    return merge_into(
        spark,
        uri,
        "quarantine MERGE",
        lambda: ensure_table(spark, uri, QUARANTINE_SCHEMA),
        quarantined_df.select(*columns),
        "t.record_key = s.record_key",
        lambda merge: merge.whenNotMatchedInsert(values={c: f"s.{c}" for c in columns}),
    )


def redrivable(
    spark: SparkSession, uri: str, version: int, reasons: tuple[str, ...], run_id: str | None
) -> DataFrame:
    """The quarantined records a redrive takes, as a source's rows (`SOURCE_FILE`, `RAW`)
    with their `record_key`: those whose current reason (the last redrive's outcome, else
    the reason they were quarantined for) starts with one of `reasons` (any, if none), that
    the run `run_id` quarantined (any, if None), and that no redrive admitted."""
    rows_df = read_version(spark, uri, version)
    outcome = F.col(REDRIVE_OUTCOME) if REDRIVE_OUTCOME in rows_df.columns else F.lit(None)
    current = F.coalesce(outcome.cast("string"), F.col("reason"))
    taken: Column = ~outcome.isin(ADMITTED, DUPLICATE) | outcome.isNull()
    if reasons:
        taken &= reduce(lambda a, b: a | b, [current.startswith(r) for r in reasons])
    if run_id is not None:
        taken &= F.col("run_id") == run_id
    return rows_df.filter(taken).select(
        F.col("source_file").alias(SOURCE_FILE), F.col("raw").alias(RAW), "record_key"
    )


def ensure_redrive_columns(spark: SparkSession, uri: str) -> bool:
    """Give the table the redrive's two columns if it lacks them; True if it had to."""

    def add() -> bool:
        present = set(spark.read.format("delta").load(uri).columns)
        missing = [f for f in REDRIVE_SCHEMA.fields if f.name not in present]
        if not missing:
            return False
        columns = ", ".join(f"{f.name} {f.dataType.simpleString()}" for f in missing)
        spark.sql(f"ALTER TABLE delta.`{uri}` ADD COLUMNS ({columns})")
        return True

    return retry_conflicts(uri, "redrive's ALTER TABLE", add)[0]


def mark_redriven(spark: SparkSession, uri: str, outcomes_df: DataFrame) -> MergeResult:
    """Set `redriven_by` and `redrive_outcome` (`outcomes_df`: `record_key` and both) on the
    rows whose outcome this redrive changes; a row keeps the run that first gave it its
    outcome, so a rerun of the same redrive updates nothing."""
    return merge_into(
        spark,
        uri,
        "quarantine's redrive MERGE",
        lambda: ensure_table(spark, uri, QUARANTINE_SCHEMA),
        outcomes_df.select("record_key", REDRIVEN_BY, REDRIVE_OUTCOME),
        "t.record_key = s.record_key",
        lambda merge: merge.whenMatchedUpdate(
            condition=f"NOT (t.{REDRIVE_OUTCOME} <=> s.{REDRIVE_OUTCOME})",
            set={REDRIVEN_BY: f"s.{REDRIVEN_BY}", REDRIVE_OUTCOME: f"s.{REDRIVE_OUTCOME}"},
        ),
    )
