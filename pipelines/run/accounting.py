"""What a run counts: records by outcome (contract sections 2 and 3) and keys by change.

Each step's Spark jobs carry `backfill <run id>: <step>` as their description, so the Spark
UI, the history server and an event log tell the steps apart; Delta's own jobs replace the
description with theirs, so the step is also kept in a property of its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal

from pyspark.sql import DataFrame, Row, SparkSession
from pyspark.sql import functions as F

from pipelines.errors import RunFailed
from pipelines.fingerprint import EMPTY, Fingerprint
from pipelines.report import Counts, KeyChanges
from pipelines.schema import EVENTS_FOLDED, MODE, REFOLD, RESUME
from pipelines.transforms.dedupe import CONFLICT
from pipelines.transforms.fingerprint import hash_sum

STEPS = ("validate", "dedupe", "quarantine", "events", "fold", "merge")
STEP_PROPERTY = "backfill.step"
TOP_CHANGES = 5


@contextmanager
def step(spark: SparkSession, run_id: str, name: str) -> Iterator[None]:
    """Name the Spark jobs started inside: `backfill <run id>: <name>`."""
    context = spark.sparkContext
    context.setJobDescription(f"backfill {run_id}: {name}")
    context.setLocalProperty(STEP_PROPERTY, name)
    try:
        yield
    finally:
        context.setJobDescription(None)  # type: ignore[arg-type]
        context.setLocalProperty(STEP_PROPERTY, None)  # type: ignore[arg-type]


def count_by_reason(parsed_df: DataFrame, run_id: str) -> list[Row]:
    """Records read, one row per quarantine reason (NULL: valid); where Spark reads them."""
    with step(parsed_df.sparkSession, run_id, "validate"):
        return parsed_df.groupBy("reason").count().collect()  # one row per reason


def count_records(by_reason: list[Row], by_outcome: list[Row]) -> Counts:
    """The accounting of sections 2 and 3; raises if a record went missing on the way.

    `by_reason` counts every record read (`count_by_reason`), `by_outcome` the dedupe outcome
    of each valid copy (rows with `outcome` and `count`, possibly several per outcome): the two
    are counted apart, so a copy lost by the window breaks the balance.
    """
    counts = Counts()
    valid_copies = 0
    for row in by_reason:
        counts.records_read += row["count"]
        if row["reason"] is None:
            valid_copies = row["count"]
        else:
            counts.quarantined_by_reason[row["reason"]] = row["count"]
    outcomes: dict[str, int] = {}
    for row in by_outcome:
        outcomes[row["outcome"]] = outcomes.get(row["outcome"], 0) + row["count"]
    counts.valid_unique = outcomes.get("valid", 0)
    counts.duplicates_dropped = outcomes.get("duplicate", 0)
    if outcomes.get(CONFLICT):
        counts.quarantined_by_reason[CONFLICT] = outcomes[CONFLICT]
    counts.quarantined = sum(counts.quarantined_by_reason.values())
    if sum(outcomes.values()) != valid_copies or not counts.balances:
        raise RunFailed(
            f"accounting does not balance: read {counts.records_read} != valid "
            f"{counts.valid_unique} + duplicates {counts.duplicates_dropped} + quarantined "
            f"{counts.quarantined}; nothing was written"
        )
    return counts


def summarize_changes(changes_df: DataFrame, measure: str | None) -> tuple[KeyChanges, Fingerprint]:
    """Keys by change and cause, how they were folded, and the largest corrections; and
    what the changes do to the state's fingerprint (rows and hashes written minus those
    replaced or deleted), counted in the same pass."""
    summary = KeyChanges(measure=measure)
    fingerprint_change = EMPTY
    for name, default in ((MODE, F.lit(None).cast("string")), (EVENTS_FOLDED, F.lit(0))):
        if name not in changes_df.columns:
            changes_df = changes_df.withColumn(name, default)
    totals = changes_df.groupBy("change", "cause", MODE).agg(
        F.count("*").alias("keys"),
        F.sum(F.abs("measure_delta")).alias("abs_change"),
        F.sum(EVENTS_FOLDED).alias("events"),
        hash_sum(F.col("hash_after")).alias("hashes_written"),
        hash_sum(F.col("hash_before")).alias("hashes_replaced"),
    )
    for row in totals.collect():  # a handful of rows: one per (change, cause, mode)
        keys, abs_change = row["keys"], row["abs_change"] or Decimal(0)
        rows = keys if row["change"] == "insert" else -keys if row["change"] == "delete" else 0
        fingerprint_change = fingerprint_change.plus(
            Fingerprint.of_hashes(rows, int(row["hashes_written"]) - int(row["hashes_replaced"]))
        )
        if row["change"] == "insert":
            summary.inserted += keys
        elif row["change"] == "update":
            summary.updated += keys
            summary.total_abs_change += abs_change
        elif row["change"] == "delete":
            summary.deleted += keys
        else:
            summary.unchanged += keys
        if row[MODE] == RESUME:
            summary.resumed += keys
            summary.new_events_folded += row["events"]
        elif row[MODE] == REFOLD:
            summary.refolded += keys
            summary.history_events_read += row["events"]
        if row["cause"]:
            figures = summary.by_cause.setdefault(row["cause"], {"keys": 0, "abs_change": 0})
            figures["keys"] += keys
            figures["abs_change"] += abs_change
    summary.total = summary.inserted + summary.updated + summary.deleted + summary.unchanged
    if measure is None:  # nothing to rank corrections by
        return summary, fingerprint_change
    top_rows = (
        changes_df.filter(F.col("change") == "update")
        .orderBy(F.abs("measure_delta").desc(), "key")
        .limit(TOP_CHANGES)
        .collect()
    )
    summary.top_changes = [
        {
            "key": r["key"],
            "before": r["measure_before"],
            "after": r["measure_after"],
            "delta": r["measure_delta"],
        }
        for r in top_rows
    ]
    return summary, fingerprint_change
