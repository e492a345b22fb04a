"""The last stage of a redrive (contract section 11): each quarantine row it re-read gets the
run that redrove it and its outcome, after the events and the state are committed, so a
redrive stopped before this stage leaves rows that the next one takes again (and records
what the stopped one did). Only outcomes that change are written: a rerun commits nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.io.commits import commit_metadata
from pipelines.io.quarantine_table import ensure_redrive_columns, mark_redriven
from pipelines.io.tables import read_version
from pipelines.run.accounting import step
from pipelines.run.context import RunContext
from pipelines.run.ingest import Batch
from pipelines.transforms.redrive import changed_outcomes


@dataclass(frozen=True)
class Marked:
    rows_marked: int
    quarantine_version: int | None


def mark(ctx: RunContext, batch: Batch, version: int) -> Marked:
    """Record the outcomes that differ from the quarantine's rows at `version` (as the store
    stage left it; the MERGE compares again with the rows as they are when it commits)."""
    assert batch.redrive_df is not None
    spark, uri = ctx.spark, ctx.request.quarantine_table
    with step(spark, ctx.request.run_id, "quarantine"):
        rows_df = read_version(spark, uri, version)
        pending_df = ctx.persist(changed_outcomes(batch.redrive_df, rows_df))
        pending = pending_df.count()
    if not pending:
        return Marked(0, version)
    ctx.progress(f"recording the outcome of {pending:,} redriven records in {uri}")
    with (
        commit_metadata(spark, ctx.commit_metadata(batch.counts, ctx.requested_mode)),
        step(spark, ctx.request.run_id, "quarantine"),
    ):
        ensure_redrive_columns(spark, uri)
        merged = mark_redriven(spark, uri, pending_df)
    return Marked(merged.updated, merged.version)
