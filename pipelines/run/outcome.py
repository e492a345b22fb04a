"""The run's report, filled in one place from what each stage returned."""

from __future__ import annotations

from dataclasses import dataclass, replace

from pipelines.io.reports import report_beside_table, write_report
from pipelines.report import Counts, KeyChanges, RedriveCounts, RunReport
from pipelines.run.commit import Committed
from pipelines.run.context import RunContext
from pipelines.run.fold import Folded
from pipelines.run.ingest import Batch
from pipelines.run.plan import Plan
from pipelines.run.preflight import Tables
from pipelines.run.redrive import Marked
from pipelines.run.store import Stored


@dataclass
class Stages:
    """What the stages of a run returned, as far as it got."""

    tables: Tables
    batch: Batch | None = None
    stored: Stored | None = None
    plan: Plan | None = None
    folded: Folded | None = None
    committed: Committed | None = None
    marked: Marked | None = None


def run_report(ctx: RunContext, done: Stages, failed: bool, duration: float) -> RunReport:
    request, tables, stored, plan = ctx.request, done.tables, done.stored, done.plan
    return RunReport(
        run_id=request.run_id,
        status=_status(done, failed, request.dry_run),
        fold=ctx.config.fold,
        sources=list(request.sources),
        window=request.window_bounds,
        table=request.table,
        quarantine_table=request.quarantine_table,
        events_table=request.events_table,
        mode=plan.mode if plan else ctx.requested_mode,
        counts=done.batch.counts if done.batch else Counts(),
        keys=done.folded.keys if done.folded else KeyChanges(),
        table_version_before=tables.state_version,
        table_version_after=(
            done.committed.table_version if done.committed else tables.state_version
        ),
        quarantine_version_after=(
            done.marked.quarantine_version
            if done.marked
            else stored.quarantine_version
            if stored
            else tables.quarantine_version
        ),
        quarantine_rows_added=stored.quarantine_rows_added if stored else 0,
        events_version_before=tables.events_version,
        events_version_after=stored.events_version if stored else tables.events_version,
        events_inserted=stored.events_inserted if stored else 0,
        events_replaced=(
            stored.events_replaced if stored else done.batch.replacing if done.batch else 0
        ),
        folded_events_version_before=plan.mark if plan else None,
        folded_events_version_after=(
            plan.events_version if plan and done.folded and not request.dry_run else None
        ),
        fingerprint_after=(
            done.committed.fingerprint.to_json()
            if done.committed and done.committed.fingerprint
            else None
        ),
        redrive=_redrive(done),
        started_at=ctx.started_at,
        duration_seconds=round(duration, 3),
        code_version=ctx.code_version,
    )


def _redrive(done: Stages) -> RedriveCounts | None:
    if done.batch is None or done.batch.redrive is None:
        return None
    marked = done.marked.rows_marked if done.marked else 0
    return replace(done.batch.redrive, quarantine_rows_marked=marked)


def _status(done: Stages, failed: bool, dry_run: bool) -> str:
    if failed:
        return "failed"
    if dry_run:
        return "dry_run"
    if done.stored is not None and done.stored.over_threshold:
        return "quarantine_threshold_exceeded"
    return done.committed.status if done.committed else "unchanged"


def keep_report(ctx: RunContext, report: RunReport) -> None:
    """The report where the user asked for it, and beside the state table it changed."""
    if ctx.request.report_path:
        write_report(report, ctx.request.report_path, ctx.config.s3)
    if report.table_version_after is not None and not ctx.request.dry_run:
        write_report(report, report_beside_table(report), ctx.config.s3)
