"""Small helpers shared by the tests."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession

from pipelines.io.sources import DateWindow
from pipelines.job import RunRequest, run_backfill
from pipelines.report import RunReport


def backfill(
    spark: SparkSession,
    config,
    sources: list[Path | str],
    table: Path | str,
    window: DateWindow | None = None,
    dry_run: bool = False,
    txn: tuple[str, int] | None = None,
    full: bool = False,
) -> RunReport:
    request = RunRequest(
        full=full,
        sources=[str(s) for s in sources],
        table=str(table),
        quarantine_table=f"{table}_quarantine",
        window=window or DateWindow(),
        dry_run=dry_run,
        txn=txn,
    )
    return run_backfill(spark, config, request, progress=lambda message: None)


def table_states(
    spark: SparkSession, table: Path | str, version: int | None = None
) -> dict[str, dict[str, Any]]:
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", version)
    rows = reader.load(str(table)).collect()  # test tables are small
    return {r["key"]: {k: _aware(v) for k, v in r.asDict().items() if k != "key"} for r in rows}


def _aware(value: Any) -> Any:
    """Spark returns timestamps as naive local datetimes; make them aware, in UTC."""
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.astimezone(UTC)
    return value
