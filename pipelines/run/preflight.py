"""Stage 1, preflight: the three tables' versions and columns, the state's mark, and the
report's place, before any record is read. A location that cannot take what this run writes
ends it at once (exit 2). The tables' logs are read by delta-rs where it can (milliseconds),
by Spark otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipelines import retention
from pipelines.errors import UsageError
from pipelines.fingerprint import Fingerprint, recorded
from pipelines.io.events_table import BUCKETS_PROPERTY
from pipelines.io.locations import check_report_path
from pipelines.io.state_table import folded_events_version
from pipelines.io.tables import TableInfo, check_table_schema, describe
from pipelines.run.context import RunContext
from pipelines.schema import QUARANTINE_SCHEMA, events_schema


@dataclass(frozen=True)
class Tables:
    """The tables as the run found them: their versions (None: not made yet), the events
    table's bucket count and id, and the events version the state's rows reflect (its mark;
    None: unknown, so every key is folded)."""

    state_version: int | None
    events_version: int | None
    quarantine_version: int | None
    buckets: int
    events_id: str | None
    mark: int | None
    # The fingerprint the log gives the state's version (None: no table, or none recorded).
    fingerprint: Fingerprint | None = None


def preflight(ctx: RunContext) -> Tables:
    request, fold = ctx.request, ctx.fold
    if request.report_path:
        check_report_path(request.report_path)
    tables = {
        "state table": (request.table, fold.state_schema),
        "events table": (request.events_table, events_schema(fold)),
        "quarantine table": (request.quarantine_table, QUARANTINE_SCHEMA),
    }
    found: dict[str, TableInfo | None] = {}
    for what, (uri, schema) in tables.items():
        found[what] = info = describe(ctx.spark, uri, what, ctx.config.s3)
        if info is not None:
            check_table_schema(uri, info, schema, what, fold)
    state, events = found["state table"], found["events table"]
    if state is not None and events is None and not request.full:
        raise UsageError(
            f"state table {request.table} has no events table at {request.events_table}: "
            "build it once with `backfill run --full` over all your sources, then run "
            "on new data only"
        )
    quarantine = found["quarantine table"]
    if request.redrive is not None and quarantine is None:
        raise nothing_to_redrive(request.quarantine_table)
    buckets = ctx.config.events.buckets
    if events is not None:
        buckets = int(events.properties.get(BUCKETS_PROPERTY, buckets))
    mark = fingerprint = None
    if state is not None:
        state_commits = state.commit_infos()
        logged = recorded(state_commits, state.version)
        fingerprint = logged.fingerprint if logged else None
        if events is not None:
            folded = folded_events_version(state_commits, events.table_id)
            mark = _readable_mark(ctx, events, folded)
    return Tables(
        state_version=state.version if state else None,
        events_version=events.version if events else None,
        quarantine_version=quarantine.version if quarantine else None,
        buckets=buckets,
        events_id=events.table_id if events else None,
        mark=mark,
        fingerprint=fingerprint,
    )


def nothing_to_redrive(quarantine_uri: str) -> UsageError:
    return UsageError(f"nothing to redrive: there is no quarantine table at {quarantine_uri}")


def _readable_mark(ctx: RunContext, events: TableInfo, mark: int | None) -> int | None:
    """The mark, or None (fold every key) when the change feed after it reaches back past
    the events table's retention window, whose files may be gone (a run killed between its
    commits, then no run for longer than the window)."""
    if mark is None or mark == events.version:
        return mark
    # The feed is read from the version after the mark; once this run commits, that version
    # is no longer the latest, which Delta would read at any age.
    commits = events.commit_infos()
    window = retention.window(commits, events.properties)
    after = [c for c in commits if int(c["version"]) == mark + 1]
    if after and int(after[0]["timestamp"]) >= window.start:
        return mark
    ctx.progress(
        f"the state's mark, events version {mark}, is outside the events table's retention "
        f"window ({window.describe()}): every key is re-folded"
    )
    return None
