"""The state and quarantine Delta tables: create, MERGE, append, with metadata on every commit."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import delta.exceptions
from delta.tables import DeltaTable
from pyspark.errors import PySparkException
from pyspark.sql import Column, DataFrame, Row, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType, TimestampType

from pipelines.errors import RunFailed, UsageError
from pipelines.folds import Fold
from pipelines.io.locations import check_can_create, local_path, not_a_table, refuse_non_delta
from pipelines.transforms.fold import DELETED

USER_METADATA_CONF = "spark.databricks.delta.commitInfo.userMetadata"
TXN_APP_ID_CONF = "spark.databricks.delta.write.txnAppId"
TXN_VERSION_CONF = "spark.databricks.delta.write.txnVersion"
# Delta's commit conflict exceptions: every class `delta.exceptions` exports (the Python
# classes share no base class, so they are caught as a tuple).
COMMIT_CONFLICTS = tuple(getattr(delta.exceptions, name) for name in delta.exceptions.__all__)
# Two runs creating one table at once: the loser finds a half-made table (a log with no
# commit yet), or finds the location taken between its own check and its commit, or finds
# there a table whose properties include the session's defaults (deletion vectors), which
# its own create did not name. Its next attempt finds the table made and uses it.
CREATE_RACES = frozenset(
    {
        "DELTA_TABLE_NOT_FOUND",
        "DELTA_CREATE_TABLE_WITH_NON_EMPTY_LOCATION",
        "DELTA_CREATE_TABLE_WITH_DIFFERENT_PROPERTY",
    }
)
MERGE_ATTEMPTS = 4
T = TypeVar("T")
# Deletion vectors are the config's choice (`tables.deletion_vectors`, applied by the session
# to every table it creates), since readers outside Spark may not open such tables.
TABLE_PROPERTIES = {"delta.enableChangeDataFeed": "true"}

QUARANTINE_SCHEMA = StructType(
    [
        # The raw record's identity (contract section 7): a digest of its source file and
        # text, and which occurrence of that text in that file it is. Insert-only by this key,
        # so re-reading an input quarantines nothing twice.
        StructField("record_key", StringType(), False),
        StructField("run_id", StringType(), False),
        StructField("quarantined_at", TimestampType(), False),
        StructField("source_file", StringType(), False),
        StructField("reason", StringType(), False),
        StructField("event_id", StringType(), True),
        StructField("key", StringType(), True),
        StructField("raw", StringType(), True),
    ]
)


@dataclass(frozen=True)
class MergeResult:
    inserted: int
    updated: int
    deleted: int
    version: int
    attempts: int = 1


@contextmanager
def commit_metadata(spark: SparkSession, metadata: dict[str, Any]) -> Iterator[None]:
    """Attach `metadata` as `userMetadata` to the Delta commits made inside the block.

    MERGE takes no per-call metadata (delta-io/delta#857), so it rides on the session conf.
    """
    spark.conf.set(USER_METADATA_CONF, json.dumps(metadata, sort_keys=True, default=str))
    try:
        yield
    finally:
        spark.conf.unset(USER_METADATA_CONF)


@contextmanager
def idempotent_writes(spark: SparkSession, txn: tuple[str, int] | None) -> Iterator[None]:
    """Delta's idempotent writes for the commits inside the block, when `txn` is given.

    The confs are session-wide (delta-io/delta#3934): one run per session at a time.
    """
    if txn is None:
        yield
        return
    app_id, version = txn
    spark.conf.set(TXN_APP_ID_CONF, app_id)
    spark.conf.set(TXN_VERSION_CONF, str(version))
    try:
        yield
    finally:
        spark.conf.unset(TXN_APP_ID_CONF)
        spark.conf.unset(TXN_VERSION_CONF)


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


def read_version(spark: SparkSession, uri: str, version: int | None) -> DataFrame | None:
    if version is None:
        return None
    return spark.read.format("delta").option("versionAsOf", version).load(uri)


FOLD_PROPERTY, MEASURE_PROPERTY = "backfill.fold", "backfill.measure"


def state_properties(fold: Fold) -> dict[str, str]:
    """What a state table records about its fold, for readers that do not know it (`diff`)."""
    properties = {FOLD_PROPERTY: fold.name}
    if fold.measure:
        properties[MEASURE_PROPERTY] = fold.measure
    return properties


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
    spark: SparkSession, uri: str, expected: StructType, what: str, fold: Fold | None = None
) -> None:
    """A usage error, before any work, when an existing table lacks the columns this run
    writes: another fold's table, or a table that is not one of ours."""
    table = DeltaTable.forPath(spark, uri)
    missing = _missing_columns(table.toDF().schema, expected)
    if missing:
        detail = table.detail().select("properties").first()
        written_by = detail["properties"].get(FOLD_PROPERTY) if detail else None
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


def merge_state(spark: SparkSession, uri: str, state_df: DataFrame, fold: Fold) -> MergeResult:
    """Insert new keys, update keys whose state changed, delete keys marked `_deleted`, and
    leave every other row untouched.

    A concurrent writer's commit makes Delta reject ours with a conflict exception; the MERGE
    is then run again against the new version, at most `MERGE_ATTEMPTS` times, after which
    the run fails having written nothing to the table. The rows it writes were folded from a
    pinned version of the state and of the events, and the commit records that events
    version, so a retry never claims more than it folded.
    """
    changed = " OR ".join(f"NOT (t.`{c}` <=> s.`{c}`)" for c in fold.state_columns)
    source_df = (
        state_df if DELETED in state_df.columns else state_df.withColumn(DELETED, F.lit(False))
    )
    values: dict[str, str | Column] = {c: f"s.`{c}`" for c in ("key", *fold.state_columns)}

    def merge() -> MergeResult:
        table = ensure_table(spark, uri, fold.state_schema, properties=state_properties(fold))
        metrics = (
            table.alias("t")
            .merge(source_df.alias("s"), "t.key = s.key")
            .whenMatchedDelete(condition=f"s.{DELETED}")
            .whenMatchedUpdate(
                condition=f"NOT s.{DELETED} AND ({changed})",
                set={c: f"s.`{c}`" for c in fold.state_columns},
            )
            .whenNotMatchedInsert(condition=f"NOT s.{DELETED}", values=values)
            .execute()
            .first()
        )
        return merge_metrics(spark, uri, metrics)

    result, attempts = retry_conflicts(uri, "MERGE", merge)
    return replace(result, attempts=attempts)


def merge_quarantine(spark: SparkSession, uri: str, quarantined_df: DataFrame) -> MergeResult:
    """Insert the records not quarantined before (by `record_key`); returns the counts.

    Insert-only, so a rerun or a retry after a concurrent commit adds nothing twice.
    """
    rows_df = quarantined_df.select(*[f.name for f in QUARANTINE_SCHEMA.fields])

    def merge() -> MergeResult:
        table = ensure_table(spark, uri, QUARANTINE_SCHEMA)
        metrics = (
            table.alias("t")
            .merge(rows_df.alias("s"), "t.record_key = s.record_key")
            .whenNotMatchedInsertAll()
            .execute()
            .first()
        )
        return merge_metrics(spark, uri, metrics)

    result, _ = retry_conflicts(uri, "quarantine MERGE", merge)
    return result


def merge_metrics(spark: SparkSession, uri: str, metrics: Row | None) -> MergeResult:
    version = table_version(spark, uri)
    assert version is not None
    return MergeResult(
        inserted=int(metrics["num_inserted_rows"]) if metrics else 0,
        updated=int(metrics["num_updated_rows"]) if metrics else 0,
        deleted=int(metrics["num_deleted_rows"]) if metrics else 0,
        version=version,
    )


def retry_conflicts(uri: str, what: str, action: Callable[[], T]) -> tuple[T, int]:
    """Run `action`, again after a growing pause while Delta rejects its commit as a conflict."""
    for attempt in range(1, MERGE_ATTEMPTS + 1):
        try:
            return action(), attempt
        except Exception as exc:
            if not _is_conflict(exc):
                raise
            if attempt == MERGE_ATTEMPTS:
                raise _gave_up(uri, what, attempt, exc) from exc
            time.sleep(random.uniform(0.5, 1.5) * attempt)
    raise AssertionError("unreachable")


def _is_conflict(exc: Exception) -> bool:
    return isinstance(exc, COMMIT_CONFLICTS) or _condition(exc) in CREATE_RACES


def _gave_up(uri: str, what: str, attempts: int, exc: Exception) -> RunFailed:
    condition = _condition(exc)
    if condition in CREATE_RACES:
        # Still no table after the pauses: no other run is making it. A run killed between
        # creating `_delta_log` and writing its first commit leaves exactly this behind.
        return RunFailed(
            f"table {uri} could not be created ({condition}, {attempts} attempts): if its "
            f"_delta_log holds no commit, a run was killed while creating it; remove that "
            f"_delta_log and run again. This run wrote nothing to it"
        )
    return RunFailed(
        f"table {uri} changed under the {what} {attempts} times in a row "
        f"({type(exc).__name__}); this run wrote nothing to it"
    )


def _condition(exc: Exception) -> str | None:
    return exc.getCondition() if isinstance(exc, PySparkException) else None


def folded_events_version(spark: SparkSession, uri: str, events_id: str) -> int | None:
    """The events-table version the state table's current rows reflect, or None if unknown.

    Each backfill commit records it in its `userMetadata` (with the events table's id). A
    RESTORE brings back an older version's rows, so the mark of that version applies. None
    (no mark, another events table, a restore by timestamp) means: fold every key.
    """
    if table_version(spark, uri) is None:
        return None
    commits = (
        DeltaTable.forPath(spark, uri)
        .history()
        .select("version", "operation", "operationParameters", "userMetadata")
        .orderBy(F.col("version").desc())
        .collect()  # one row per version the log keeps
    )
    newest_visible: int | None = None
    for commit in commits:
        if newest_visible is not None and commit["version"] > newest_visible:
            continue
        if commit["operation"] == "RESTORE":
            restored = (commit["operationParameters"] or {}).get("version")
            if restored is None:
                return None
            newest_visible = int(restored)
            continue
        if commit["operation"] != "MERGE":
            continue  # e.g. the CREATE of a run killed before its MERGE: it folded nothing
        metadata = _json_object(commit["userMetadata"])
        if metadata.get("events_table_id") == events_id and "events_version" in metadata:
            return int(metadata["events_version"])
    return None


def _json_object(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
