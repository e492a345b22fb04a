"""Stage 6, commit: the folded rows MERGEd into the state table, with the events version they
reflect (the state's new mark) in the same commit. A crash before it leaves the old mark, so
the next run folds the same changes again."""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.io.commits import commit_metadata, idempotent_writes
from pipelines.io.state_table import merge_state
from pipelines.report import Counts
from pipelines.run.accounting import step
from pipelines.run.context import RunContext
from pipelines.run.fold import Folded
from pipelines.run.plan import Plan
from pipelines.run.preflight import Tables


@dataclass(frozen=True)
class Committed:
    # committed | already_applied (the txn version was committed before) | unchanged (the
    # fold changes no row and the mark is current: no commit) | dry_run (no commit)
    status: str
    table_version: int | None


def commit(
    ctx: RunContext, tables: Tables, counts: Counts, plan: Plan, folded: Folded
) -> Committed:
    spark, request, keys = ctx.spark, ctx.request, folded.keys
    if request.dry_run:
        return Committed("dry_run", tables.state_version)
    if keys.inserted + keys.updated + keys.deleted == 0 and plan.mark == plan.events_version:
        return Committed("unchanged", tables.state_version)
    ctx.progress(f"merging into {request.table}")
    mark = {"events_table_id": plan.events_id, "events_version": plan.events_version}
    with (
        commit_metadata(spark, ctx.commit_metadata(counts, plan.mode, **mark)),
        idempotent_writes(spark, request.txn),
        step(spark, request.run_id, "merge"),
    ):
        merged = merge_state(spark, request.table, folded.state_df, ctx.fold)
    already = request.txn is not None and merged.version == tables.state_version
    return Committed("already_applied" if already else "committed", merged.version)
