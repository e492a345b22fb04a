"""Stage 6, commit: the folded rows MERGEd into the state table, with the events version they
reflect (the state's new mark) and the fingerprint of the version it makes in the same
commit. A crash before it leaves the old mark, so the next run folds the same changes again.

The fingerprint is the one of the version the fold read plus what the fold's changes do to
it. If another writer committed since, the MERGE applies the same rows to the table as it
is then, so the change is counted again against that version before the attempt."""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.fingerprint import EMPTY, FINGERPRINT_FIELD, Fingerprint, recorded
from pipelines.io.commits import commit_metadata, idempotent_writes, set_commit_metadata
from pipelines.io.state_table import merge_state
from pipelines.io.tables import TableInfo, describe, read_version
from pipelines.report import Counts
from pipelines.run.accounting import step, summarize_changes
from pipelines.run.context import RunContext
from pipelines.run.fold import Folded
from pipelines.run.plan import Plan
from pipelines.run.preflight import Tables
from pipelines.transforms.fingerprint import fingerprint_of
from pipelines.transforms.reconcile import with_change_kind


@dataclass(frozen=True)
class Committed:
    # committed | already_applied (the txn version was committed before) | unchanged (the
    # fold changes no row and the mark is current: no commit) | dry_run (no commit)
    status: str
    table_version: int | None
    fingerprint: Fingerprint | None = None  # of the version committed


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
    metadata = ctx.commit_metadata(counts, plan.mode, **mark)
    fitted: list[tuple[int | None, Fingerprint]] = []  # (version, its fingerprint after)

    def fit_fingerprint() -> None:
        """The metadata of the attempt: the fingerprint MERGEd onto the latest version."""
        info = describe(spark, request.table, "state table", ctx.config.s3)
        latest = info.version if info else None
        if not fitted or fitted[-1][0] != latest:
            fitted.append((latest, _after_merge(ctx, tables, folded, info)))
        fingerprint = fitted[-1][1].to_json()
        set_commit_metadata(spark, {**metadata, FINGERPRINT_FIELD: fingerprint})

    with (
        commit_metadata(spark, metadata),
        idempotent_writes(spark, request.txn),
        step(spark, request.run_id, "merge"),
    ):
        merged = merge_state(spark, request.table, folded.state_df, ctx.fold, fit_fingerprint)
    already = request.txn is not None and merged.version == tables.state_version
    if already:
        return Committed("already_applied", merged.version, tables.fingerprint)
    fitted_to, fingerprint = fitted[-1]
    if fitted_to is not None and merged.read_version not in (None, fitted_to):
        # Another writer committed in the moment between the check and the MERGE's read
        # without conflicting with it (a blind append): `backfill verify` will say so.
        ctx.progress(
            f"the state changed between versions {fitted_to} and {merged.read_version} "
            f"while this run merged; check version {merged.version} with `backfill verify`"
        )
    return Committed("committed", merged.version, fingerprint)


def _after_merge(
    ctx: RunContext, tables: Tables, folded: Folded, info: TableInfo | None
) -> Fingerprint:
    """The fingerprint of the state as `info` found it (None: no table yet) once the fold's
    rows are MERGEd onto it."""
    version = info.version if info else None
    if version == tables.state_version:
        before, change = tables.fingerprint, folded.fingerprint_change
    else:  # another writer committed since the fold read the state: count again
        uri = ctx.request.table
        current_df = None if version is None else read_version(ctx.spark, uri, version)
        changes_df = folded.state_df.transform(with_change_kind, current_df, ctx.fold)
        before, change = None, summarize_changes(changes_df, ctx.fold.measure)[1]
    if info is None:
        return EMPTY.plus(change)
    if before is None:
        before = _fingerprint_at(ctx, info)
    return before.plus(change)


def _fingerprint_at(ctx: RunContext, info: TableInfo) -> Fingerprint:
    """What the log records for the state's version `info` found, or, where nothing is, its
    rows' own."""
    found = recorded(info.commit_infos(), info.version)
    if found is not None and found.fingerprint is not None:
        return found.fingerprint
    version = info.version
    ctx.progress(f"state version {version} records no fingerprint: computing it from its rows")
    rows_df = read_version(ctx.spark, ctx.request.table, version)
    return fingerprint_of(rows_df, ctx.fold.state_schema)
