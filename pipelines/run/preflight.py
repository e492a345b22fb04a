"""Stage 1, preflight: the three tables' versions and columns, and the report's place, before
any record is read. A location that cannot take what this run writes ends it at once (exit 2).
"""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.errors import UsageError
from pipelines.io.events_table import table_buckets
from pipelines.io.locations import check_report_path
from pipelines.io.tables import check_table_schema, existing_version
from pipelines.run.context import RunContext
from pipelines.schema import QUARANTINE_SCHEMA, events_schema


@dataclass(frozen=True)
class Tables:
    """The tables as the run found them: their versions (None: not made yet) and the
    events table's bucket count."""

    state_version: int | None
    events_version: int | None
    quarantine_version: int | None
    buckets: int


def preflight(ctx: RunContext) -> Tables:
    request, fold = ctx.request, ctx.fold
    if request.report_path:
        check_report_path(request.report_path)
    tables = {
        "state table": (request.table, fold.state_schema),
        "events table": (request.events_table, events_schema(fold)),
        "quarantine table": (request.quarantine_table, QUARANTINE_SCHEMA),
    }
    versions = {}
    for what, (uri, schema) in tables.items():
        versions[what] = existing_version(ctx.spark, uri, what)
        if versions[what] is not None:
            check_table_schema(ctx.spark, uri, schema, what, fold)
    no_events = versions["events table"] is None and not request.full
    if versions["state table"] is not None and no_events:
        raise UsageError(
            f"state table {request.table} has no events table at {request.events_table}: "
            "build it once with `backfill run --full` over all your sources, then run "
            "on new data only"
        )
    return Tables(
        state_version=versions["state table"],
        events_version=versions["events table"],
        quarantine_version=versions["quarantine table"],
        buckets=table_buckets(ctx.spark, request.events_table, ctx.config.events.buckets),
    )
