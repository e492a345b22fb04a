"""Any Delta table of a run: its version, its rows at a version, its change feed, its
properties, creating it, and checking it can take what a run writes."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, Row, SparkSession
from pyspark.sql.types import StructType

from pipelines.config import S3Config
from pipelines.errors import RunFailed, UsageError
from pipelines.folds import Fold
from pipelines.io import delta_log
from pipelines.io.locations import check_can_create, local_path, not_a_table, refuse_non_delta
from pipelines.io.table_properties import FOLD_PROPERTY, TABLE_PROPERTIES


@dataclass(frozen=True)
class TableInfo:
    """An existing table as a run finds it before reading a record: its latest version, the
    id Delta gave it at creation, its columns and properties, and its commits (newest first,
    up to that version; read only when asked for)."""

    version: int
    table_id: str
    schema: StructType
    properties: dict[str, str]
    commit_infos: Callable[[], list[dict[str, Any]]]


def describe(spark: SparkSession, uri: str, what: str, s3: S3Config) -> TableInfo | None:
    """The table `what` at `uri`, or None where there is nothing yet (see `existing_version`).

    Read from the Delta log by delta-rs in milliseconds; where it cannot answer, by Spark,
    whose checks give a location that is not a table its one-line error.
    """
    found = delta_log.snapshot(uri, s3)
    if found is not None:
        schema = StructType.fromJson(json.loads(found.schema_json))
        return TableInfo(
            found.version, found.table_id, schema, found.properties, found.commit_infos
        )
    version = existing_version(spark, uri, what)
    if version is None:
        return None
    table = DeltaTable.forPath(spark, uri)
    detail = table_detail(spark, uri)

    def commit_infos() -> list[dict[str, Any]]:
        rows = (
            table.history()
            .where(f"version <= {version}")
            .select("version", "timestamp", "operation", "operationParameters", "userMetadata")
            .orderBy("version", ascending=False)
            .collect()  # one row per version the log keeps
        )
        # `timestamp` in ms since the epoch, as delta-rs gives it.
        return [
            {**row.asDict(), "timestamp": int(row["timestamp"].timestamp() * 1000)} for row in rows
        ]

    return TableInfo(
        version,
        str(detail["id"]),
        table.toDF().schema,
        dict(detail["properties"] or {}),
        commit_infos,
    )


def existing_version(spark: SparkSession, uri: str, what: str) -> int | None:
    """The latest version of the Delta table `what` at `uri`, or None where there is nothing
    yet (no such path, or an empty folder).

    A location that holds anything else is a usage error, raised before any record is read:
    a typo in a path must cost a second, not the backfill. Works for every file system
    Hadoop knows (local, `file://`, `s3a://`, ...).
    """
    version = table_version(spark, uri)
    if version is not None:
        return version
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    path = jvm.org.apache.hadoop.fs.Path(uri)
    fs = path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    if not fs.exists(path):
        local = local_path(uri)
        if local is not None:
            check_can_create(local, what)
        return None
    if fs.getFileStatus(path).isFile():
        raise not_a_table(what, uri)
    names: list[str] = []
    entries = fs.listStatusIterator(path)
    while entries.hasNext() and len(names) < 1000:
        names.append(str(entries.next().getPath().getName()))
    refuse_non_delta(what, uri, names)
    return None


def table_version(spark: SparkSession, uri: str) -> int | None:
    """The latest committed version of the Delta table at `uri`, or None if there is none."""
    if not DeltaTable.isDeltaTable(spark, uri):
        return None
    row = DeltaTable.forPath(spark, uri).history(1).select("version").first()
    return int(row["version"]) if row else None


def read_version(spark: SparkSession, uri: str, version: int) -> DataFrame:
    """The table's rows as they were at `version` (time travel)."""
    return spark.read.format("delta").option("versionAsOf", version).load(uri)


def read_changes(spark: SparkSession, uri: str, after: int | None, upto: int) -> DataFrame:
    """The table's change feed from the version after `after` (from the first when None) to
    `upto`: each row with `_change_type`, `_commit_version` and `_commit_timestamp`."""
    return (
        spark.read.format("delta")
        .option("readChangeFeed", "true")
        .option("startingVersion", 0 if after is None else after + 1)
        .option("endingVersion", upto)
        .load(uri)
    )


def table_detail(spark: SparkSession, uri: str) -> Row:
    """`DESCRIBE DETAIL`: the table's id, properties, files and size."""
    detail = DeltaTable.forPath(spark, uri).detail().first()
    assert detail is not None
    return detail


def table_properties(spark: SparkSession, uri: str) -> dict[str, Any]:
    return dict(table_detail(spark, uri)["properties"] or {})


def table_id(spark: SparkSession, uri: str) -> str:
    """The id Delta gave the table when it was created: a recreated table has another."""
    return str(table_detail(spark, uri)["id"])


def ensure_table(
    spark: SparkSession,
    uri: str,
    schema: StructType,
    partition_by: str | None = None,
    properties: dict[str, str] | None = None,
) -> DeltaTable:
    """Create the table with the change data feed on if it is missing; check its columns."""
    builder = DeltaTable.createIfNotExists(spark).location(uri).addColumns(schema)
    if partition_by:
        builder = builder.partitionedBy(partition_by)
    for name, value in {**TABLE_PROPERTIES, **(properties or {})}.items():
        builder = builder.property(name, value)
    table = builder.execute()
    _check_columns(uri, table.toDF().schema, schema)
    return table


def check_table_schema(
    uri: str, table: TableInfo, expected: StructType, what: str, fold: Fold | None = None
) -> None:
    """A usage error, before any work, when an existing table lacks the columns this run
    writes: another fold's table, or a table that is not one of ours."""
    missing = _missing_columns(table.schema, expected)
    if missing:
        written_by = table.properties.get(FOLD_PROPERTY)
        by = f" written by the {written_by!r} fold" if written_by else ""
        wanted = f" of the {fold.name!r} fold" if fold else ""
        raise UsageError(
            f"{what} {uri} is a Delta table{by} without the columns{wanted} this run writes "
            f"({', '.join(missing)}): give another location, or the fold that wrote it"
        )


def _check_columns(uri: str, found: StructType, expected: StructType) -> None:
    missing = _missing_columns(found, expected)
    if missing:
        have = ", ".join(f"{f.name} {f.dataType.simpleString()}" for f in found.fields)
        raise RunFailed(
            f"table {uri} does not have the expected columns {', '.join(missing)}; it has {have}"
        )


def _missing_columns(found: StructType, expected: StructType) -> list[str]:
    found_types = {f.name: f.dataType.simpleString() for f in found.fields}
    return [
        f"{f.name} {f.dataType.simpleString()}"
        for f in expected.fields
        if found_types.get(f.name) != f.dataType.simpleString()
    ]
