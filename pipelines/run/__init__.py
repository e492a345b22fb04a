"""The backfill run (contract sections 2, 3, 5 and 7) as six stages, each in its module:

preflight (the tables' versions and columns) -> ingest (read, validate, deduplicate) ->
store (commit the quarantine, then the events) -> plan (what changed since the state's
mark) -> fold (resume or re-fold the touched keys) -> commit (MERGE the state with its new
mark); a redrive, whose records come from the quarantine, then records each one's outcome
(redrive). A crash between commits is repaired by the next run, because every run folds from
the mark. Each stage takes the context and what the stages before it returned.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from pyspark.sql import SparkSession

from pipelines.config import Config
from pipelines.failures import vanished_source
from pipelines.report import RunReport
from pipelines.run import commit, fold, ingest, plan, preflight, redrive, store
from pipelines.run.context import Progress, RedriveFilter, RunContext, RunRequest, new_run_id
from pipelines.run.outcome import Stages, keep_report, run_report

__all__ = ["Progress", "RedriveFilter", "RunRequest", "new_run_id", "run_backfill"]


def run_backfill(
    spark: SparkSession,
    config: Config,
    request: RunRequest,
    progress: Progress,
    on_report: Callable[[RunReport], None] | None = None,
) -> RunReport:
    """Run one backfill and return its report; `report.status` says what was committed.

    Status `quarantine_threshold_exceeded` means the quarantine was written and neither the
    events nor the state were. Raises `RunFailed` when the accounting does not balance.
    `on_report` is given the report however the run ends, a failed one's too.
    """
    started = time.monotonic()
    ctx = RunContext.open(spark, config, request, progress)
    done = Stages(preflight.preflight(ctx))
    failed = True
    try:
        done.batch = ingest.ingest(ctx, done.tables)
        done.stored = store.store(ctx, done.tables, done.batch)
        if not done.stored.over_threshold:
            done.plan = plan.plan(ctx, done.tables, done.batch, done.stored)
            if done.plan.history_df is not None:
                done.folded = fold.fold(ctx, done.tables, done.plan)
                done.committed = commit.commit(
                    ctx, done.tables, done.batch.counts, done.plan, done.folded
                )
            if request.redrive is not None and not request.dry_run:
                assert done.stored.quarantine_version is not None
                done.marked = redrive.mark(ctx, done.batch, done.stored.quarantine_version)
        failed = False
    except Exception as exc:
        vanished = vanished_source(exc)
        if vanished is not None:
            raise vanished from exc
        raise
    finally:
        ctx.release()
        report = run_report(ctx, done, failed, time.monotonic() - started)
        keep_report(ctx, report)
        if on_report is not None:
            on_report(report)
    return report
