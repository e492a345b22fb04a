"""History, diff and rollback of a Delta state table: what the CLI and notebooks call.

`history_from_log` and `diff_from_log` read the Delta log and the change feed with delta-rs:
no JVM, answers in about a second. `history`, `diff` and `rollback` use a Spark session; `diff`
there also compares two snapshots, for a range the change feed does not cover. Spark is
imported only by the functions that take a session.
"""

from __future__ import annotations

import getpass
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipelines import fingerprint, retention
from pipelines.config import S3Config
from pipelines.diffing import diff_summary, net_change_feed, spark_time, totals_by_change
from pipelines.errors import UsageError
from pipelines.io import delta_log
from pipelines.io.table_properties import MEASURE_PROPERTY

if TYPE_CHECKING:
    from delta.tables import DeltaTable
    from pyspark.sql import DataFrame, SparkSession


@dataclass
class TableDiff:
    """Per-key changes between two versions and how they were found (by Spark)."""

    changes: DataFrame
    from_version: int
    to_version: int
    method: str  # change_data_feed | snapshots
    measure: str | None

    def summary(self) -> dict[str, Any]:
        """Counts per kind of change and the total absolute change of the measure."""
        from pyspark.sql import functions as F

        rows = self.changes.groupBy("change").agg(
            F.count("*").alias("keys"), F.sum(F.abs("delta")).alias("abs_change")
        )
        return diff_summary(
            ((r["change"], r["keys"], r["abs_change"]) for r in rows.collect()),
            self.from_version,
            self.to_version,
            self.method,
            self.measure,
        )


@dataclass
class LogDiff:
    """Per-key changes netted from the change feed read without Spark, ordered by key, as
    `TableDiff.changes` rows give them (`Row.asDict(recursive=True)`)."""

    changes: list[dict[str, Any]]
    from_version: int
    to_version: int
    measure: str | None
    method: str = "change_data_feed"

    def summary(self) -> dict[str, Any]:
        return diff_summary(
            totals_by_change(self.changes),
            self.from_version,
            self.to_version,
            self.method,
            self.measure,
        )


def history_from_log(uri: str, s3: S3Config) -> list[dict[str, Any]]:
    """`history` read from the log without Spark: the same commits, fields and times."""
    return with_fingerprints(
        [
            {
                "version": info["version"],
                "timestamp": spark_time(info["timestamp"] * 1000).isoformat(),
                "operation": info.get("operation"),
                "operationParameters": _text_map(info.get("operationParameters")),
                "userMetadata": _parse_metadata(info.get("userMetadata")),
                "operationMetrics": _text_map(info.get("operationMetrics")),
            }
            for info in delta_log.commits(uri, s3)
        ]
    )


def with_fingerprints(commits: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each commit with the `fingerprint` its version carries (contract section 10): the one
    it records, or the one of the rows it kept (`pipelines.fingerprint.recorded`); None where
    the version changed rows without recording one."""
    for commit in commits:
        found = fingerprint.recorded(commits, int(commit["version"]))
        carried = found.fingerprint if found else None
        commit["fingerprint"] = carried.to_json() if carried else None
    return commits


def diff_from_log(
    uri: str, s3: S3Config, from_version: int, to_version: int | None = None
) -> LogDiff | None:
    """`diff` netted from the change feed without Spark; None where the feed does not cover
    the range (or the range is not forwards), which `diff` then compares by snapshots.

    A table that is not there and versions it does not have are the same usage errors."""
    table = delta_log.open_table(uri, s3)
    latest = table.version()
    to_version = latest if to_version is None else to_version
    check_versions(uri, latest, from_version, to_version)
    properties = table.metadata().configuration
    retention.check_inside(uri, delta_log.commits(uri, s3), properties, from_version, to_version)
    if from_version >= to_version:
        return None
    columns = [field.name for field in table.schema().fields if field.name != "key"]
    measure = table.metadata().configuration.get(MEASURE_PROPERTY)
    measure = measure if measure in columns else None
    feed = delta_log.change_feed(table, uri, s3, from_version, to_version)
    if feed is None or not set(columns) <= set(feed.column_names):
        return None
    return LogDiff(net_change_feed(feed, columns, measure), from_version, to_version, measure)


def require_table(spark: SparkSession, uri: str) -> DeltaTable:
    from delta.tables import DeltaTable

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
    return with_fingerprints(
        [
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
    )


def diff(
    spark: SparkSession, uri: str, from_version: int, to_version: int | None = None
) -> TableDiff:
    """Keys whose state differs between two versions (`to_version` defaults to the latest)."""
    from pyspark.sql.utils import AnalysisException

    from pipelines.io.tables import read_changes, read_version, table_version
    from pipelines.transforms.diff import compare_snapshots, net_change_feed

    table = require_table(spark, uri)
    latest = table_version(spark, uri)
    assert latest is not None
    to_version = latest if to_version is None else to_version
    check_versions(uri, latest, from_version, to_version)
    check_inside_window(spark, uri, from_version, to_version)
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
    from pipelines.io.commits import commit_metadata
    from pipelines.io.tables import table_version

    table = require_table(spark, uri)
    current = table_version(spark, uri)
    assert current is not None
    if not 0 <= to_version <= current:
        raise UsageError(f"{uri} has versions 0 to {current}; there is no version {to_version}")
    check_inside_window(spark, uri, to_version)
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


def check_inside_window(spark: SparkSession, uri: str, *wanted: int) -> None:
    """A usage error naming the retention window when a wanted version is older than it
    (`pipelines.retention`), from the log as Spark reads it."""
    from pipelines.io.tables import table_properties

    rows = (
        require_table(spark, uri)
        .history()
        .select("version", "timestamp")
        .collect()  # one row per commit: the log, not the data
    )
    commits = [
        {
            "version": r["version"],
            "timestamp": int(r["timestamp"].timestamp() * 1000),
        }
        for r in rows
    ]
    retention.check_inside(uri, commits, table_properties(spark, uri), *wanted)


def _measure(spark: SparkSession, uri: str, columns: list[str]) -> str | None:
    """The state column whose change a diff sums up: the one the table's fold declared when
    it created the table (none for a fold without a measure, or a table made elsewhere)."""
    from pipelines.io.tables import table_properties

    measure = table_properties(spark, uri).get(MEASURE_PROPERTY)
    return measure if measure in columns else None


def _require_files(spark: SparkSession, uri: str, version: int) -> None:
    """Refuse, changing nothing, a version whose data files VACUUM has removed."""
    from pyspark.sql.utils import AnalysisException

    from pipelines.io.tables import read_version

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


def check_versions(uri: str, latest: int, *wanted: int) -> None:
    for version in wanted:
        if not 0 <= version <= latest:
            raise UsageError(f"{uri} has versions 0 to {latest}; there is no version {version}")


def _text_map(values: dict[str, Any] | None) -> dict[str, str | None]:
    """A commitInfo map as Spark reads it, a map of strings: the log holds some values as
    JSON booleans or numbers (OPTIMIZE's `auto`, RESTORE's `version`), delta-rs hands them
    over as such, Spark as their JSON text."""
    return {
        name: value if value is None or isinstance(value, str) else json.dumps(value)
        for name, value in (values or {}).items()
    }


def _parse_metadata(text: str | None) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text
