"""Stage 3, store: the batch's rejects into the quarantine (insert-only by raw record), then
its new and replacing events into the events table. A run over the quarantine threshold
stops after the quarantine; a dry run stores nothing."""

from __future__ import annotations

from dataclasses import dataclass, replace

from pipelines.io.commits import commit_metadata, idempotent_writes
from pipelines.io.events_table import merge_events
from pipelines.io.quarantine_table import merge_quarantine
from pipelines.io.tables import table_version
from pipelines.run.accounting import step
from pipelines.run.context import RunContext
from pipelines.run.ingest import Batch
from pipelines.run.preflight import Tables
from pipelines.transforms.stored import replaces_stored


@dataclass(frozen=True)
class Stored:
    """What the run committed to the quarantine and events tables, and their versions."""

    over_threshold: bool
    quarantine_rows_added: int
    quarantine_version: int | None
    events_inserted: int
    events_replaced: int
    events_version: int | None


def store(ctx: RunContext, tables: Tables, batch: Batch) -> Stored:
    spark, request, counts = ctx.spark, ctx.request, batch.counts
    nothing = Stored(
        over_threshold=False,
        quarantine_rows_added=0,
        quarantine_version=tables.quarantine_version,
        events_inserted=0,
        events_replaced=batch.replacing,  # as planned, until committed
        events_version=tables.events_version,
    )
    if request.dry_run:
        return nothing
    # The threshold guards against a bad night; a redrive's records were quarantined before.
    max_ratio = None if request.redrive else ctx.config.quarantine.max_ratio
    over_threshold = max_ratio is not None and counts.quarantined_ratio > max_ratio
    quarantined = replace(nothing, over_threshold=over_threshold)
    with (
        commit_metadata(spark, ctx.commit_metadata(counts, ctx.requested_mode)),
        idempotent_writes(spark, request.txn),
    ):
        if batch.quarantine_df is not None and (counts.quarantined or batch.replacing):
            ctx.progress(f"quarantining into {request.quarantine_table}")
            with step(spark, request.run_id, "quarantine"):
                merged = merge_quarantine(spark, request.quarantine_table, batch.quarantine_df)
            quarantined = replace(
                quarantined,
                quarantine_rows_added=merged.inserted,
                quarantine_version=merged.version,
            )
        if over_threshold or batch.winners_df is None:
            stored = quarantined
        else:
            ctx.progress(f"storing {counts.valid_unique:,} events in {request.events_table}")
            with step(spark, request.run_id, "events"):
                inserted, replaced = _store_events(ctx, tables, batch)
            stored = replace(quarantined, events_inserted=inserted, events_replaced=replaced)
    if over_threshold:
        return stored
    return replace(stored, events_version=table_version(spark, request.events_table))


def _store_events(ctx: RunContext, tables: Tables, batch: Batch) -> tuple[int, int]:
    """(events inserted, stored events replaced). A batch that replaces no stored event, as
    the table stood when the batch was deduplicated, only inserts; if another writer
    committed in between, the full MERGE then applies this batch's copies that beat what
    that writer stored (it inserts nothing more: every new id was just inserted)."""
    assert batch.winners_df is not None
    spark, uri, fold = ctx.spark, ctx.request.events_table, ctx.fold
    replacing = replaces_stored(fold.content_fields)
    if batch.replacing:
        merged = merge_events(spark, uri, batch.winners_df, tables.buckets, fold, replacing)
        return merged.inserted, merged.updated
    inserted = merge_events(spark, uri, batch.winners_df, tables.buckets, fold, None)
    # A table this run created is read at its first version, the empty CREATE.
    deduplicated_against = 0 if tables.events_version is None else tables.events_version
    if inserted.read_version in (None, deduplicated_against):
        return inserted.inserted, 0
    merged = merge_events(spark, uri, batch.winners_df, tables.buckets, fold, replacing)
    return inserted.inserted + merged.inserted, merged.updated
