"""History, diff and rollback of a Delta state table: what the CLI and notebooks call."""

from __future__ import annotations

import getpass
import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.utils import AnalysisException

from pipelines.errors import UsageError
from pipelines.io.commits import commit_metadata
from pipelines.io.tables import (
    MEASURE_PROPERTY,
    read_changes,
    read_version,
    table_properties,
    table_version,
)
from pipelines.transforms.diff import compare_snapshots, net_change_feed


@dataclass
class TableDiff:
    """Per-key changes between two versions and how they were found."""

    changes: DataFrame
    from_version: int
    to_version: int
    method: str  # change_data_feed | snapshots
    measure: str | None

    def summary(self) -> dict[str, Any]:
        """Counts per kind of change and the total absolute change of the measure."""
        totals = {"insert": 0, "update": 0, "delete": 0}
        total_abs = Decimal(0)
        rows = self.changes.groupBy("change").agg(
            F.count("*").alias("keys"), F.sum(F.abs("delta")).alias("abs_change")
        )
        for row in rows.collect():
            totals[row["change"]] = row["keys"]
            total_abs += row["abs_change"] or 0
        return {
            "from_version": self.from_version,
            "to_version": self.to_version,
            "method": self.method,
            "keys_changed": sum(totals.values()),
            "keys_inserted": totals["insert"],
            "keys_updated": totals["update"],
            "keys_deleted": totals["delete"],
            "measure": self.measure,
            "total_abs_change": str(total_abs) if self.measure else None,
        }


def require_table(spark: SparkSession, uri: str) -> DeltaTable:
    if not DeltaTable.isDeltaTable(spark, uri):
        raise UsageError(f"{uri} is not a Delta table")
    return DeltaTable.forPath(spark, uri)


def history(spark: SparkSession, uri: str) -> list[dict[str, Any]]:
    """Every version, newest first: time, operation, who (userMetadata) and metrics."""
    rows = (
        require_table(spark, uri)
        .history()
        .select(
            "version",
            "timestamp",
            "operation",
            "operationParameters",
            "userMetadata",
            "operationMetrics",
        )
    )
    return [
        {
            "version": r["version"],
            "timestamp": r["timestamp"].isoformat(),
            "operation": r["operation"],
            "operationParameters": dict(r["operationParameters"] or {}),
            "userMetadata": _parse_metadata(r["userMetadata"]),
            "operationMetrics": dict(r["operationMetrics"] or {}),
        }
        for r in rows.collect()  # one row per commit: the log, not the data
    ]


def diff(
    spark: SparkSession, uri: str, from_version: int, to_version: int | None = None
) -> TableDiff:
    """Keys whose state differs between two versions (`to_version` defaults to the latest)."""
    table = require_table(spark, uri)
    latest = table_version(spark, uri)
    assert latest is not None
    to_version = latest if to_version is None else to_version
    for version in (from_version, to_version):
        if not 0 <= version <= latest:
            raise UsageError(f"{uri} has versions 0 to {latest}; there is no version {version}")
    columns = [c for c in table.toDF().columns if c != "key"]
    measure = _measure(spark, uri, columns)
    if from_version < to_version:
        try:
            feed = read_changes(spark, uri, from_version, to_version)
            changes = net_change_feed(feed, columns, measure)
            changes.take(1)  # a feed that does not cover the range fails here
            return TableDiff(changes, from_version, to_version, "change_data_feed", measure)
        except AnalysisException:
            pass  # feed not enabled for part of the range: compare the snapshots instead
    before = read_version(spark, uri, from_version)
    after = read_version(spark, uri, to_version)
    changes = compare_snapshots(before, after, columns, measure)
    return TableDiff(changes, from_version, to_version, "snapshots", measure)


def rollback(
    spark: SparkSession, uri: str, to_version: int, reason: str | None = None
) -> tuple[TableDiff, int]:
    """RESTORE the table to `to_version`, recording who and why; returns what it undid."""
    table = require_table(spark, uri)
    current = table_version(spark, uri)
    assert current is not None
    if not 0 <= to_version <= current:
        raise UsageError(f"{uri} has versions 0 to {current}; there is no version {to_version}")
    _require_files(spark, uri, to_version)
    undone = diff(spark, uri, to_version, current)
    metadata = {
        "writer": "backfill rollback",
        "user": getpass.getuser(),
        "reason": reason or "",
        "restored_version": to_version,
        "rolled_back_from": current,
    }
    with commit_metadata(spark, metadata):
        table.restoreToVersion(to_version)
    new_version = table_version(spark, uri)
    assert new_version is not None
    return undone, new_version


def _measure(spark: SparkSession, uri: str, columns: list[str]) -> str | None:
    """The state column whose change a diff sums up: the one the table's fold declared when
    it created the table (none for a fold without a measure, or a table made elsewhere)."""
    measure = table_properties(spark, uri).get(MEASURE_PROPERTY)
    return measure if measure in columns else None


def _require_files(spark: SparkSession, uri: str, version: int) -> None:
    """Refuse, changing nothing, a version whose data files VACUUM has removed."""
    jvm: Any = spark.sparkContext._jvm
    hadoop_conf = spark.sparkContext._jsc.hadoopConfiguration()
    try:
        files = read_version(spark, uri, version).inputFiles()
    except AnalysisException as exc:
        raise UsageError(f"version {version} of {uri} cannot be read: {exc.getMessage()}") from exc
    for file_uri in files:
        path = jvm.org.apache.hadoop.fs.Path(file_uri)
        if not path.getFileSystem(hadoop_conf).exists(path):
            raise UsageError(
                f"version {version} of {uri} can no longer be restored: its data files were "
                "removed (VACUUM); nothing was changed"
            )


def _parse_metadata(text: str | None) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text
