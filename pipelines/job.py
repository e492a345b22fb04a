"""The backfill run (contract sections 2, 3, 5 and 7), in two stages.

1. Ingest: read -> validate -> deduplicate within the batch (window over `event_id`) and
   against the events already stored -> commit the rejects to the quarantine (insert-only
   by raw record), then the new and replacing events to the events table (MERGE).
2. Fold: the events table's changes since the version the state reflects name the touched
   keys -> resume or re-fold each -> MERGE into the state, with the events version it now
   reflects in the same commit. A crash between commits is repaired by the next run,
   because every run folds from that mark.

Transforms are pure; this module wires them to the I/O modules, counts, and commits.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import reduce
from importlib import metadata

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pipelines.accounting import count_by_reason, count_records, step, summarize_changes
from pipelines.config import Config
from pipelines.errors import RunFailed, UsageError
from pipelines.folding import fold_all_keys, fold_touched_keys
from pipelines.folds import Fold, get_fold
from pipelines.io import events_table
from pipelines.io.delta_tables import (
    QUARANTINE_SCHEMA,
    check_table_schema,
    commit_metadata,
    existing_version,
    folded_events_version,
    idempotent_writes,
    merge_quarantine,
    merge_state,
    read_version,
    table_version,
)
from pipelines.io.events_table import event_row_columns, events_schema
from pipelines.io.locations import check_report_path
from pipelines.io.sources import DateWindow, read_sources
from pipelines.report import (
    Counts,
    KeyChanges,
    RunReport,
    changes_path,
    report_beside_table,
    write_report,
)
from pipelines.transforms.dedupe import (
    BROADCAST_LOSERS,
    CONFLICT,
    content_fields,
    copy_outcomes,
    quarantined_records,
    repeated_ids,
    split_by_copies,
)
from pipelines.transforms.quarantine import quarantine_rows
from pipelines.transforms.reconcile import with_change_kind
from pipelines.transforms.stored import STORED_BUCKET, displaced_copies, with_stored_outcome
from pipelines.transforms.typed import parse_sources

Progress = Callable[[str], None]


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:8]


def default_quarantine_uri(table_uri: str) -> str:
    return table_uri.rstrip("/") + "_quarantine"


@dataclass(frozen=True)
class RunRequest:
    sources: list[str]
    table: str
    quarantine_table: str
    events_table: str = ""  # default: <table>_events
    window: DateWindow = field(default_factory=DateWindow)
    full: bool = False  # re-fold every key from the events table
    dry_run: bool = False
    report_path: str | None = None
    run_id: str = field(default_factory=new_run_id)
    # Delta idempotent writes: (app id, version). A commit whose version is not above the
    # last one recorded for the app id is skipped, so a retried window applies once.
    txn: tuple[str, int] | None = None

    @property
    def events_uri(self) -> str:
        return self.events_table or events_table.default_events_uri(self.table)


@dataclass
class Batch:
    """What the ingest stage made of the sources, ready to commit."""

    outcomes_df: DataFrame
    quarantine_df: DataFrame
    winners_df: DataFrame | None  # rows for the events table; None when nothing is new
    stored_df: DataFrame | None  # the events table before this run; None if there is none


def run_backfill(
    spark: SparkSession, config: Config, request: RunRequest, progress: Progress
) -> RunReport:
    """Run one backfill and return its report; `report.status` says what was committed.

    Status `quarantine_threshold_exceeded` means the quarantine was written and neither the
    events nor the state were. Raises `RunFailed` when the accounting does not balance.
    """
    started = time.monotonic()
    fold = get_fold(config.fold, config.fold_options)
    report = _new_report(config, request)
    buckets = _check_tables(spark, request, fold, report, config.events.buckets)
    cached: list[DataFrame] = []
    try:
        batch = _ingest(spark, request, config, fold, report, buckets, cached, progress)
        if request.dry_run:
            _dry_run(spark, request, report, batch, fold, buckets, cached)
        else:
            _commit(spark, request, report, config, batch, fold, buckets, cached, progress)
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


def _check_tables(
    spark: SparkSession, request: RunRequest, fold: Fold, report: RunReport, buckets: int
) -> int:
    """Versions and columns of the three tables, and the report's place, before any record
    is read: a location that cannot take what this run writes ends it at once (exit 2)."""
    if request.report_path:
        check_report_path(request.report_path)
    tables = {
        "state table": (request.table, fold.state_schema),
        "events table": (request.events_uri, events_schema(fold)),
        "quarantine table": (request.quarantine_table, QUARANTINE_SCHEMA),
    }
    versions = {}
    for what, (uri, schema) in tables.items():
        versions[what] = existing_version(spark, uri, what)
        if versions[what] is not None:
            check_table_schema(spark, uri, schema, what, fold)
    report.table_version_before = report.table_version_after = versions["state table"]
    report.events_version_before = report.events_version_after = versions["events table"]
    report.quarantine_version_after = versions["quarantine table"]
    missing_events = report.events_version_before is None and not request.full
    if report.table_version_before is not None and missing_events:
        raise UsageError(
            f"state table {request.table} has no events table at {request.events_uri}: "
            "build it once with `backfill run --full` over all your sources, then run "
            "on new data only"
        )
    return events_table.table_buckets(spark, request.events_uri, buckets)


def _ingest(
    spark: SparkSession,
    request: RunRequest,
    config: Config,
    fold: Fold,
    report: RunReport,
    buckets: int,
    cached: list[DataFrame],
    progress: Progress,
) -> Batch:
    """Read, validate and deduplicate the sources, within the batch and against the stored."""
    progress(f"reading {len(request.sources)} source(s) and validating every record")
    parsed_df = (
        parse_sources(read_sources(spark, request.sources, request.window), config.fields, fold)
        # Names a record for the semi-joins that fetch raw text by id; stable because the
        # parsed records are persisted before anything reads the id.
        .withColumn("record_id", F.monotonically_increasing_id())
    )
    # Frames with a row per record live on local disk (read back through the OS page
    # cache): on the JVM heap, ten million raw records ran a 4g driver out of memory.
    parsed_df = _persist(parsed_df, cached, StorageLevel.DISK_ONLY)
    by_reason = count_by_reason(parsed_df, request.run_id)
    valid_copies = sum(r["count"] for r in by_reason if r["reason"] is None)
    stored_df = None
    if report.events_version_before is not None:
        stored_df = events_table.read_events(
            spark, request.events_uri, report.events_version_before
        )
    valid_df = parsed_df.filter(F.col("reason").isNull())
    with step(spark, request.run_id, "dedupe"):
        repeated_df = _persist(repeated_ids(valid_df), cached)
        repeated = repeated_df.count()
    content = content_fields(fold)
    singles_df, copies_df = split_by_copies(
        valid_df, content, repeated_df, repeated <= BROADCAST_LOSERS
    )
    # Only the copies of repeated ids are kept: the rest are re-read from the parsed records,
    # which costs less than storing every record's outcome.
    copies_df = _persist(copy_outcomes(copies_df, content), cached, StorageLevel.DISK_ONLY)
    outcomes_df = singles_df.unionByName(copies_df).transform(
        with_stored_outcome, stored_df, valid_copies <= BROADCAST_LOSERS, content
    )
    if stored_df is not None:  # met with the stored events once, not at every use
        outcomes_df = _persist(outcomes_df, cached, StorageLevel.DISK_ONLY)
    report.counts = count_records(parsed_df, outcomes_df, request.run_id, by_reason)
    progress(
        f"read {report.counts.records_read:,} records: {report.counts.valid_unique:,} new or "
        f"replacing events, {report.counts.duplicates_dropped:,} duplicates, "
        f"{report.counts.quarantined:,} quarantined"
    )
    conflicts = report.counts.quarantined_by_reason.get(CONFLICT, 0)
    rejects_df = quarantined_records(parsed_df, outcomes_df, conflicts)
    displaced_df = None
    if stored_df is not None:
        replaced = outcomes_df.filter("replaces").groupBy(STORED_BUCKET).count().collect()
        report.events_replaced = sum(r["count"] for r in replaced)  # until committed
        if replaced:
            displaced_df = displaced_copies(
                stored_df, outcomes_df, [r[STORED_BUCKET] for r in replaced]
            )
    return Batch(
        outcomes_df=outcomes_df,
        quarantine_df=quarantine_rows(rejects_df, displaced_df, request.run_id),
        winners_df=_winners(parsed_df, outcomes_df, valid_copies, report, buckets, fold),
        stored_df=stored_df,
    )


def _winners(
    parsed_df: DataFrame,
    outcomes_df: DataFrame,
    valid_copies: int,
    report: RunReport,
    buckets: int,
    fold: Fold,
) -> DataFrame | None:
    """The accepted records, raw text included, as rows of the events table.

    Winners and the other valid copies are told apart by record id through whichever set
    is smaller (broadcast when small enough), so the raw records are never shuffled.
    """
    winners = report.counts.valid_unique
    if winners == 0:
        return None
    others = valid_copies - winners
    valid_df = parsed_df.filter(F.col("reason").isNull())
    if winners <= others:
        ids_df, how, size = outcomes_df.filter("outcome = 'valid'"), "left_semi", winners
    else:
        ids_df, how, size = outcomes_df.filter("outcome != 'valid'"), "left_anti", others
    ids_df = ids_df.select("record_id")
    rows_df = valid_df.join(
        F.broadcast(ids_df) if size <= BROADCAST_LOSERS else ids_df, "record_id", how
    )
    return events_table.as_event_rows(rows_df, report.run_id, buckets, fold)


def _commit(
    spark: SparkSession,
    request: RunRequest,
    report: RunReport,
    config: Config,
    batch: Batch,
    fold: Fold,
    buckets: int,
    cached: list[DataFrame],
    progress: Progress,
) -> None:
    """Quarantine, then events, then the fold of what changed into the state."""
    max_ratio = config.quarantine.max_ratio
    over_threshold = max_ratio is not None and report.counts.quarantined_ratio > max_ratio
    with commit_metadata(spark, report.commit_metadata()), idempotent_writes(spark, request.txn):
        if report.counts.quarantined or report.events_replaced:
            progress(f"quarantining into {request.quarantine_table}")
            with step(spark, request.run_id, "quarantine"):
                merged = merge_quarantine(spark, request.quarantine_table, batch.quarantine_df)
            report.quarantine_rows_added = merged.inserted
            report.quarantine_version_after = merged.version
        if over_threshold:
            report.status = "quarantine_threshold_exceeded"
            return
        if batch.winners_df is not None:
            progress(f"storing {report.counts.valid_unique:,} events in {request.events_uri}")
            with step(spark, request.run_id, "events"):
                stored = events_table.merge_events(
                    spark, request.events_uri, batch.winners_df, buckets, fold
                )
            report.events_inserted, report.events_replaced = stored.inserted, stored.updated
    report.events_version_after = table_version(spark, request.events_uri)
    _fold_and_merge(spark, request, report, fold, buckets, cached, progress)


def _fold_and_merge(
    spark: SparkSession,
    request: RunRequest,
    report: RunReport,
    fold: Fold,
    buckets: int,
    cached: list[DataFrame],
    progress: Progress,
) -> None:
    """Fold what the events table gained since the state's mark; MERGE it with the new mark."""
    events_version = report.events_version_after
    if events_version is None:
        report.status = "unchanged"
        return
    events_id = events_table.table_id(spark, request.events_uri)
    mark = _mark(spark, request, report, events_id)
    if not request.full and mark == events_version:
        progress(f"no new events since the state's mark: {request.table} stays at its version")
        report.status = "unchanged"
        return
    history_df = events_table.read_events(spark, request.events_uri, events_version)
    changes_df = None
    if mark is not None and mark < events_version:
        changes_df = events_table.read_changes(spark, request.events_uri, mark, events_version)
    state_df = _fold_changes(spark, request, report, fold, history_df, changes_df, buckets, cached)
    progress(_folded_line(report.keys))
    report.folded_events_version_after = events_version
    if report.keys.inserted + report.keys.updated + report.keys.deleted == 0 and mark == (
        events_version
    ):
        report.status = "unchanged"
        return
    progress(f"merging into {request.table}")
    mark_metadata = {"events_table_id": events_id, "events_version": events_version}
    with (
        commit_metadata(spark, {**report.commit_metadata(), **mark_metadata}),
        idempotent_writes(spark, request.txn),
        step(spark, request.run_id, "merge"),
    ):
        merged = merge_state(spark, request.table, state_df, fold)
    report.table_version_after = merged.version
    already = request.txn is not None and merged.version == report.table_version_before
    report.status = "already_applied" if already else "committed"


def _mark(
    spark: SparkSession, request: RunRequest, report: RunReport, events_id: str
) -> int | None:
    mark = None
    if report.table_version_before is not None:
        mark = folded_events_version(spark, request.table, events_id)
    report.folded_events_version_before = mark
    report.mode = "full" if request.full or mark is None else "incremental"
    return mark


def _fold_changes(
    spark: SparkSession,
    request: RunRequest,
    report: RunReport,
    fold: Fold,
    history_df: DataFrame,
    changes_df: DataFrame | None,
    buckets: int,
    cached: list[DataFrame],
) -> DataFrame:
    """New state rows of the touched keys (every key when full), with their change kind.

    Returns the rows to MERGE (persisted), having filled `report.keys`.
    """
    current_df = read_version(spark, request.table, report.table_version_before)
    with step(spark, request.run_id, "fold"):
        if report.mode == "full":
            state_df = fold_all_keys(history_df, changes_df, current_df, fold)
        else:
            assert changes_df is not None and current_df is not None
            state_df = fold_touched_keys(history_df, changes_df, current_df, fold, buckets, cached)
        state_df = _persist(state_df, cached)
        changes_kind_df = _persist(state_df.transform(with_change_kind, current_df, fold), cached)
        report.keys = summarize_changes(changes_kind_df, fold.measure)
    if request.dry_run and request.report_path:
        write_changes(changes_kind_df, changes_path(request.report_path))
    return state_df


def _dry_run(
    spark: SparkSession,
    request: RunRequest,
    report: RunReport,
    batch: Batch,
    fold: Fold,
    buckets: int,
    cached: list[DataFrame],
) -> None:
    """Fold as a real run would, over the events table as this batch would leave it."""
    report.status = "dry_run"
    stored_df, winners_df = batch.stored_df, batch.winners_df
    columns = event_row_columns(fold)
    replaced_ids = batch.outcomes_df.filter("replaces").select("event_id")
    history_parts, change_parts = [], []
    if stored_df is not None:
        history_parts.append(stored_df.join(replaced_ids, "event_id", "left_anti"))
        change_parts.append(
            _as_change(stored_df, replaced_ids, "left_semi", "update_preimage", columns)
        )
    if winners_df is not None:
        history_parts.append(winners_df)
        change_parts.append(_as_change(winners_df, replaced_ids, "left_anti", "insert", columns))
        change_parts.append(
            _as_change(winners_df, replaced_ids, "left_semi", "update_postimage", columns)
        )
    if not history_parts:
        return
    events_id = (
        events_table.table_id(spark, request.events_uri)
        if report.events_version_before is not None
        else ""
    )
    mark, before = _mark(spark, request, report, events_id), report.events_version_before
    if mark is not None and before is not None and mark < before:
        committed = events_table.read_changes(spark, request.events_uri, mark, before)
        change_parts.append(committed.select(*columns, "_change_type"))
    history_df = reduce(DataFrame.unionByName, history_parts).select(*columns)
    changes_df = reduce(DataFrame.unionByName, change_parts)
    _fold_changes(spark, request, report, fold, history_df, changes_df, buckets, cached)


def _as_change(
    rows_df: DataFrame, ids_df: DataFrame, how: str, change_type: str, columns: list[str]
) -> DataFrame:
    """The rows of `rows_df` joined (`how`) with `ids_df`, as change feed rows."""
    return rows_df.join(ids_df, "event_id", how).select(
        *columns, F.lit(change_type).alias("_change_type")
    )


def write_changes(changes_df: DataFrame, path: str) -> None:
    """The per-key changes a dry run would apply, as JSON Lines, written by Spark."""
    changed_df = changes_df.filter(F.col("change") != "unchanged").drop("_mode", "_events_folded")
    changed_df.coalesce(1).write.mode("overwrite").json(path)


def _folded_line(keys: KeyChanges) -> str:
    return (
        f"folded {keys.total:,} touched keys: {keys.resumed:,} resumed with "
        f"{keys.new_events_folded:,} new events, {keys.refolded:,} re-folded from "
        f"{keys.history_events_read:,} events of their history; {keys.inserted:,} new, "
        f"{keys.updated:,} to correct, {keys.deleted:,} to delete"
    )


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
        events_table=request.events_uri,
        mode="full" if request.full else "incremental",
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
