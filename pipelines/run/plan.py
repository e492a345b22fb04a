"""Stage 4, plan: what the events table gained since the version the state reflects (its
mark), as the history to fold from and the change feed that names the touched keys.

A real run reads both from the events table it has just committed. A dry run committed
nothing, so it builds the same view from the stored events and its own batch: the history
as this batch would leave it, and the changes as the feed would show them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import reduce

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from pipelines.io.tables import read_changes, read_version, table_id
from pipelines.run.context import RunContext
from pipelines.run.ingest import Batch
from pipelines.run.preflight import Tables
from pipelines.run.store import Stored
from pipelines.schema import event_row_columns


@dataclass(frozen=True)
class Plan:
    """How the state will be folded: `mode` (full or incremental), from which mark, up to
    which events version, over which history and changes. No history: nothing to fold."""

    mode: str
    mark: int | None
    events_version: int | None
    events_id: str
    history_df: DataFrame | None = None
    changes_df: DataFrame | None = None


def plan(ctx: RunContext, tables: Tables, batch: Batch, stored: Stored) -> Plan:
    if ctx.request.dry_run:
        return _dry_run_view(ctx, tables, batch)
    request, events_version = ctx.request, stored.events_version
    if events_version is None:  # nothing was ever accepted
        return Plan(ctx.requested_mode, None, None, "")
    events_id = tables.events_id or table_id(ctx.spark, request.events_table)
    mark = tables.mark
    mode = _mode(ctx, mark)
    if not request.full and mark == events_version:
        ctx.progress(f"no new events since the state's mark: {request.table} stays at its version")
        return Plan(mode, mark, events_version, events_id)
    changes_df = None
    if mark is not None and mark < events_version:
        changes_df = read_changes(ctx.spark, request.events_table, mark, events_version)
    history_df = read_version(ctx.spark, request.events_table, events_version)
    return Plan(mode, mark, events_version, events_id, history_df, changes_df)


def _mode(ctx: RunContext, mark: int | None) -> str:
    return "full" if ctx.request.full or mark is None else "incremental"


def _dry_run_view(ctx: RunContext, tables: Tables, batch: Batch) -> Plan:
    """The history and change feed the events table would have after this batch."""
    stored_df, winners_df = batch.stored_df, batch.winners_df
    columns = event_row_columns(ctx.fold)
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
        return Plan(ctx.requested_mode, None, tables.events_version, "")
    before = tables.events_version
    events_id, mark = tables.events_id or "", tables.mark
    if mark is not None and before is not None and mark < before:
        committed = read_changes(ctx.spark, ctx.request.events_table, mark, before)
        change_parts.append(committed.select(*columns, "_change_type"))
    history_df = reduce(DataFrame.unionByName, history_parts).select(*columns)
    changes_df = reduce(DataFrame.unionByName, change_parts)
    return Plan(_mode(ctx, mark), mark, before, events_id, history_df, changes_df)


def _as_change(
    rows_df: DataFrame, ids_df: DataFrame, how: str, change_type: str, columns: list[str]
) -> DataFrame:
    """The rows of `rows_df` joined (`how`) with `ids_df`, as change feed rows."""
    return rows_df.join(ids_df, "event_id", how).select(
        *columns, F.lit(change_type).alias("_change_type")
    )
