"""Stage 2, ingest: the sources read, every record validated, and the valid ones deduplicated
within the batch (the window over `event_id`) and against the events already stored, with
the counts of contract sections 2 and 3."""

from __future__ import annotations

from dataclasses import dataclass, replace

from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from pipelines.io.quarantine_table import redrivable
from pipelines.io.sources import read_sources
from pipelines.io.tables import read_version
from pipelines.report import Counts, RedriveCounts
from pipelines.run.accounting import count_by_reason, count_records, step
from pipelines.run.context import RunContext
from pipelines.run.preflight import Tables
from pipelines.schema import ADMITTED, DUPLICATE, REDRIVE_OUTCOME, REDRIVEN_BY, Source
from pipelines.transforms.dedupe import (
    BROADCAST_LOSERS,
    CONFLICT,
    copy_outcomes,
    quarantined_records,
    repeated_ids,
    split_by_copies,
)
from pipelines.transforms.quarantine import quarantine_rows
from pipelines.transforms.redrive import redrive_outcomes
from pipelines.transforms.stored import (
    STORED_BUCKET,
    as_event_rows,
    displaced_copies,
    with_stored_outcome,
)
from pipelines.transforms.typed import parse_sources


@dataclass(frozen=True)
class Batch:
    """What the run made of its sources, ready to commit."""

    counts: Counts
    outcomes_df: DataFrame  # each valid copy's dedupe outcome, and whether it `replaces`
    quarantine_df: DataFrame | None  # rows for the quarantine table; None: none to add
    winners_df: DataFrame | None  # rows for the events table; None when nothing is new
    stored_df: DataFrame | None  # the events table before this run; None if there is none
    replacing: int  # stored events a newer copy of this batch replaces
    # A redrive's: each quarantine row's outcome (`redrive_outcomes`, and the stored copies
    # it displaced, quarantined as conflict losers), and the counts of the redriven ones.
    redrive_df: DataFrame | None = None
    redrive: RedriveCounts | None = None


def ingest(ctx: RunContext, tables: Tables) -> Batch:
    spark, request, fold = ctx.spark, ctx.request, ctx.fold
    if request.redrive is None:
        ctx.progress(f"reading {len(request.sources)} source(s) and validating every record")
        sources = read_sources(spark, request.sources, request.window)
    else:
        ctx.progress(f"re-reading quarantined records from {request.quarantine_table}")
        assert tables.quarantine_version is not None  # preflight refuses a redrive without
        records_df = redrivable(
            spark,
            request.quarantine_table,
            tables.quarantine_version,
            request.redrive.reasons,
            request.redrive.run_id,
        )
        sources = [Source(records_df, columns=None, carried=("record_key",))]
    parsed_df = (
        parse_sources(sources, ctx.config.fields, fold)
        # Names a record for the semi-joins that fetch raw text by id; stable because the
        # parsed records are persisted before anything reads the id.
        .withColumn("record_id", F.monotonically_increasing_id())
    )
    # Frames with a row per record live on local disk (read back through the OS page
    # cache): on the JVM heap, ten million raw records ran a 4g driver out of memory.
    parsed_df = ctx.persist(parsed_df, StorageLevel.DISK_ONLY)
    by_reason = count_by_reason(parsed_df, request.run_id)
    valid_copies = sum(r["count"] for r in by_reason if r["reason"] is None)
    stored_df = None
    if tables.events_version is not None:
        stored_df = read_version(spark, request.events_table, tables.events_version)
    valid_df = parsed_df.filter(F.col("reason").isNull())
    with step(spark, request.run_id, "dedupe"):
        repeated_df = ctx.persist(repeated_ids(valid_df))
        repeated = repeated_df.count()
    content = fold.content_fields
    singles_df, copies_df = split_by_copies(
        valid_df, content, repeated_df, repeated <= BROADCAST_LOSERS
    )
    # Only the copies of repeated ids are kept: the rest are re-read from the parsed records,
    # which costs less than storing every record's outcome.
    copies_df = ctx.persist(copy_outcomes(copies_df, content), StorageLevel.DISK_ONLY)
    outcomes_df = singles_df.unionByName(copies_df).transform(
        with_stored_outcome, stored_df, valid_copies <= BROADCAST_LOSERS, content
    )
    if stored_df is not None:  # met with the stored events once, not at every use
        outcomes_df = ctx.persist(outcomes_df, StorageLevel.DISK_ONLY)
    with step(spark, request.run_id, "dedupe"):  # the counts and the replaced copies' buckets
        by_outcome = outcomes_df.groupBy("outcome", "replaces", STORED_BUCKET).count().collect()
    counts = count_records(by_reason, by_outcome)
    ctx.progress(
        f"read {counts.records_read:,} records: {counts.valid_unique:,} new or "
        f"replacing events, {counts.duplicates_dropped:,} duplicates, "
        f"{counts.quarantined:,} quarantined"
    )
    rejects_df = quarantined_records(
        parsed_df, outcomes_df, counts.quarantined_by_reason.get(CONFLICT, 0)
    )
    displaced_df, replacing = None, 0
    replaced = [r for r in by_outcome if r["replaces"]]
    if stored_df is not None and replaced:
        replacing = sum(r["count"] for r in replaced)
        displaced_df = displaced_copies(
            stored_df, outcomes_df, sorted({r[STORED_BUCKET] for r in replaced})
        )
    # A redrive adds no row for a record it re-read (its row is there already) but those
    # of the stored copies it displaced.
    quarantine_df = quarantine_rows(
        None if request.redrive else rejects_df, displaced_df, request.run_id
    )
    batch = Batch(
        counts=counts,
        outcomes_df=outcomes_df,
        quarantine_df=quarantine_df,
        winners_df=_winners(ctx, parsed_df, outcomes_df, counts, valid_copies, tables.buckets),
        stored_df=stored_df,
        replacing=replacing,
    )
    return batch if request.redrive is None else _redriven(ctx, batch, parsed_df)


def _redriven(ctx: RunContext, batch: Batch, parsed_df: DataFrame) -> Batch:
    """The batch with each redriven record's outcome and their counts."""
    assert ctx.request.redrive is not None
    outcomes_df = ctx.persist(
        redrive_outcomes(parsed_df, batch.outcomes_df, batch.stored_df, ctx.request.run_id)
    )
    with step(ctx.spark, ctx.request.run_id, "dedupe"):  # the redriven records' outcomes
        by_outcome = {
            r[REDRIVE_OUTCOME]: r["count"]
            for r in outcomes_df.groupBy(REDRIVE_OUTCOME).count().collect()
        }
    admitted, duplicates = by_outcome.get(ADMITTED, 0), by_outcome.get(DUPLICATE, 0)
    redriven = sum(by_outcome.values())
    counts = RedriveCounts(
        filter=ctx.request.redrive.to_json(),
        redriven=redriven,
        admitted=admitted,
        duplicates_dropped=duplicates,
        still_quarantined=redriven - admitted - duplicates,
        by_outcome=by_outcome,
    )
    if batch.quarantine_df is not None:  # displaced copies: lost to this redrive's copy
        displaced_df = batch.quarantine_df.select(
            "record_key",
            F.lit(ctx.request.run_id).alias(REDRIVEN_BY),
            F.col("reason").alias(REDRIVE_OUTCOME),
        )
        outcomes_df = outcomes_df.unionByName(displaced_df)
    return replace(batch, redrive_df=outcomes_df, redrive=counts)


def _winners(
    ctx: RunContext,
    parsed_df: DataFrame,
    outcomes_df: DataFrame,
    counts: Counts,
    valid_copies: int,
    buckets: int,
) -> DataFrame | None:
    """The accepted records, raw text included, as rows of the events table.

    Winners and the other valid copies are told apart by record id through whichever set
    is smaller (broadcast when small enough), so the raw records are never shuffled.
    """
    winners = counts.valid_unique
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
    return as_event_rows(rows_df, ctx.request.run_id, buckets, ctx.fold)
