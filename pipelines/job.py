"""The backfill run: read -> validate -> deduplicate -> fold -> reconcile -> MERGE.

Transforms are pure; this module wires them to the I/O modules, counts, and commits.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from importlib import metadata

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pipelines.config import Config
from pipelines.errors import RunFailed
from pipelines.folds import Fold, get_fold
from pipelines.io.delta_tables import (
    append_quarantine,
    check_table_schema,
    commit_metadata,
    idempotent_writes,
    merge_state,
    read_version,
    table_version,
)
from pipelines.io.sources import DateWindow, read_raw_records
from pipelines.report import (
    Counts,
    KeyChanges,
    RunReport,
    changes_path,
    report_beside_table,
    write_report,
)
from pipelines.transforms.dedupe import CONFLICT, quarantined_records, with_dedupe_outcome
from pipelines.transforms.fold import fold_states
from pipelines.transforms.reconcile import with_change_kind
from pipelines.transforms.validate import parse_events

Progress = Callable[[str], None]
TOP_CHANGES = 5
# Each step's Spark jobs carry `backfill <run id>: <step>` as their description, so the
# Spark UI, the history server and an event log tell the steps apart; Delta's own jobs
# replace the description with theirs, so the step is also kept in a property of its own.
STEPS = ("validate", "dedupe", "fold", "merge", "quarantine")
STEP_PROPERTY = "backfill.step"


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:8]


def default_quarantine_uri(table_uri: str) -> str:
    return table_uri.rstrip("/") + "_quarantine"


@dataclass(frozen=True)
class RunRequest:
    sources: list[str]
    table: str
    quarantine_table: str
    window: DateWindow = field(default_factory=DateWindow)
    dry_run: bool = False
    report_path: str | None = None
    run_id: str = field(default_factory=new_run_id)
    # Delta idempotent writes: (app id, version). A commit whose version is not above the
    # last one recorded for the app id is skipped, so a retried window applies once.
    txn: tuple[str, int] | None = None


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


def run_backfill(
    spark: SparkSession, config: Config, request: RunRequest, progress: Progress
) -> RunReport:
    """Run one backfill and return its report; `report.status` says what was committed.

    Status `quarantine_threshold_exceeded` means the quarantine was written and the state
    table was not. Raises `RunFailed` when the accounting does not balance.
    """
    started = time.monotonic()
    fold = get_fold(config.fold)
    report = _new_report(config, request)

    version_before = table_version(spark, request.table)
    if version_before is not None:
        check_table_schema(spark, request.table, fold.state_schema)
    report.table_version_before = version_before
    report.table_version_after = version_before
    report.quarantine_version_after = table_version(spark, request.quarantine_table)

    progress(f"reading {len(request.sources)} source(s) and validating every record")
    parsed_df = (
        read_raw_records(spark, request.sources, request.window)
        .transform(parse_events, config.fields, fold.ops)
        # Names a record for the semi-join that fetches the raw text of conflict losers; stable
        # because the parsed records are persisted before anything reads the id.
        .withColumn("record_id", F.monotonically_increasing_id())
    )
    cached: list[DataFrame] = []
    try:
        # Frames with a row per record live on local disk (read back through the OS page
        # cache): on the JVM heap, ten million raw records ran a 4g driver out of memory.
        parsed_df = _persist(parsed_df, cached, StorageLevel.DISK_ONLY)
        valid_df = parsed_df.filter(F.col("reason").isNull())
        outcomes_df = _persist(
            valid_df.transform(with_dedupe_outcome), cached, StorageLevel.DISK_ONLY
        )
        report.counts = count_records(parsed_df, outcomes_df, request.run_id)
        progress(
            f"read {report.counts.records_read:,} records: {report.counts.quarantined:,} "
            f"quarantined, {report.counts.duplicates_dropped:,} duplicates; folding keys"
        )
        with step(spark, request.run_id, "fold"):
            state_df = _persist(outcomes_df.transform(fold_states, fold), cached)
            current_df = read_version(spark, request.table, version_before)
            changes_df = _persist(state_df.transform(with_change_kind, current_df, fold), cached)
            report.keys = summarize_changes(changes_df, fold.measure)
        progress(
            f"folded {report.keys.total:,} keys: {report.keys.inserted:,} new, "
            f"{report.keys.updated:,} to correct"
        )
        conflicts = report.counts.quarantined_by_reason.get(CONFLICT, 0)
        quarantined_df = quarantined_records(parsed_df, outcomes_df, conflicts)
        _commit(
            spark, request, report, config, quarantined_df, state_df, changes_df, fold, progress
        )
    except Exception as exc:
        report.status = "failed"
        vanished = re.search(
            r"FILE_NOT_EXIST\].*?reading file (\S+?)\. File does not exist", str(exc)
        )
        if vanished:
            raise RunFailed(
                f"source file {vanished.group(1)} disappeared while the run read it; nothing "
                "was written: run again once the sources stop changing"
            ) from exc
        raise
    finally:
        for df in cached:
            df.unpersist()
        report.duration_seconds = round(time.monotonic() - started, 3)
        if request.report_path:
            write_report(report, request.report_path, config.s3)
        if report.table_version_after is not None and not request.dry_run:
            write_report(report, report_beside_table(report), config.s3)
    return report


def _commit(
    spark: SparkSession,
    request: RunRequest,
    report: RunReport,
    config: Config,
    quarantined_df: DataFrame,
    state_df: DataFrame,
    changes_df: DataFrame,
    fold: Fold,
    progress: Progress,
) -> None:
    """Write the state (unless held back) and the quarantine, each commit with metadata."""
    max_ratio = config.quarantine.max_ratio
    over_threshold = max_ratio is not None and report.counts.quarantined_ratio > max_ratio
    if request.dry_run:
        report.status = "dry_run"
        if request.report_path:
            write_changes(changes_df, changes_path(request.report_path))
        return
    with commit_metadata(spark, report.commit_metadata()), idempotent_writes(spark, request.txn):
        if over_threshold:
            report.status = "quarantine_threshold_exceeded"
        elif report.keys.inserted + report.keys.updated == 0:
            progress(f"no key changes: {request.table} stays at its version")
            report.status = "unchanged"
        else:
            progress(f"merging into {request.table}")
            with step(spark, request.run_id, "merge"):
                merged = merge_state(spark, request.table, state_df, fold)
            report.table_version_after = merged.version
            already = request.txn is not None and merged.version == report.table_version_before
            report.status = "already_applied" if already else "committed"
        if report.counts.quarantined:
            progress(
                f"appending {report.counts.quarantined:,} records to {request.quarantine_table}"
            )
            with step(spark, request.run_id, "quarantine"):
                report.quarantine_version_after = append_quarantine(
                    spark, request.quarantine_table, quarantined_df, report.run_id
                )


def write_changes(changes_df: DataFrame, path: str) -> None:
    """The per-key changes a dry run would apply, as JSON Lines, written by Spark."""
    changed_df = changes_df.filter(F.col("change") != "unchanged")
    changed_df.coalesce(1).write.mode("overwrite").json(path)


def count_records(parsed_df: DataFrame, outcomes_df: DataFrame, run_id: str) -> Counts:
    """The accounting of sections 2 and 3; raises if a record went missing on the way.

    `parsed_df` holds every record read, `outcomes_df` the dedupe outcome of each valid one:
    the two are counted apart, so a copy lost by the window breaks the balance. Both are
    persisted, so these counts are where Spark reads, validates and deduplicates.
    """
    spark = parsed_df.sparkSession
    counts = Counts()
    valid_copies = 0
    with step(spark, run_id, "validate"):
        by_reason = parsed_df.groupBy("reason").count().collect()  # one row per reason
    for row in by_reason:
        counts.records_read += row["count"]
        if row["reason"] is None:
            valid_copies = row["count"]
        else:
            counts.quarantined_by_reason[row["reason"]] = row["count"]
    with step(spark, run_id, "dedupe"):
        by_outcome = outcomes_df.groupBy("outcome").count().collect()
    outcomes = {r["outcome"]: r["count"] for r in by_outcome}
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


def summarize_changes(changes_df: DataFrame, measure: str | None) -> KeyChanges:
    summary = KeyChanges(measure=measure)
    totals = changes_df.groupBy("change", "cause").agg(
        F.count("*").alias("keys"), F.sum(F.abs("measure_delta")).alias("abs_change")
    )
    for row in totals.collect():  # a handful of rows: one per (change, cause)
        keys, abs_change = row["keys"], row["abs_change"] or Decimal(0)
        if row["change"] == "insert":
            summary.inserted += keys
        elif row["change"] == "update":
            summary.updated += keys
            summary.total_abs_change += abs_change
        else:
            summary.unchanged += keys
        if row["cause"]:
            summary.by_cause[row["cause"]] = {"keys": keys, "abs_change": abs_change}
    summary.total = summary.inserted + summary.updated + summary.unchanged
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
    return summary


def _persist(
    df: DataFrame, cached: list[DataFrame], level: StorageLevel = StorageLevel.MEMORY_AND_DISK
) -> DataFrame:
    """Persist `df` until the run ends; frames with a row per key stay in memory."""
    cached.append(df.persist(level))
    return df


def _new_report(config: Config, request: RunRequest) -> RunReport:
    return RunReport(
        run_id=request.run_id,
        status="started",
        fold=config.fold,
        sources=list(request.sources),
        window={
            "from": request.window.start.isoformat() if request.window.start else None,
            "to": request.window.end.isoformat() if request.window.end else None,
        },
        table=request.table,
        quarantine_table=request.quarantine_table,
        counts=Counts(),
        keys=KeyChanges(),
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        code_version=_code_version(),
    )


def _code_version() -> str:
    try:
        return metadata.version("backfill-pipeline")
    except metadata.PackageNotFoundError:
        return "unknown"
