"""`backfill maintain` (contract section 9): each of a run's three tables compacted, its
files outside the retention window removed, and a checkpoint written, with a report of
files and bytes before and after.

Nothing here changes a row. Compaction rewrites files with `dataChange=false`, so the change
feed, `diff` and the next run's plan see no change; the events table is laid out by key
within its buckets (Z-order on the one column), so one key's history sits in few files.
VACUUM removes only files no version inside the window needs (`pipelines.retention`).
Compaction conflicts with a run's MERGE over the same files; whichever commits second tries
again (`io.commits.retry_conflicts`), so both land.
"""

from __future__ import annotations

import getpass
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from pipelines.config import Config
from pipelines.errors import UsageError
from pipelines.io import delta_log
from pipelines.retention import RETENTION_PROPERTY

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

VACUUM_START = "VACUUM START"
LOG_RETENTION_PROPERTY = "delta.logRetentionDuration"
LOG_RETENTION_DEFAULT_DAYS = 30  # Delta's own default for the log
VACUUM_LOGGING_CONF = "spark.databricks.delta.vacuum.logging.enabled"
# Delta's OPTIMIZE leaves a file alone once it is this large (its default, 1 GiB).
MIN_FILE_SIZE_CONF, MIN_FILE_SIZE_DEFAULT = "spark.databricks.delta.optimize.minFileSize", 1 << 30
# The size OPTIMIZE bins files into (its default, 1 GiB); the events table's comes from
# `events.max_file_mb`.
MAX_FILE_SIZE_CONF = "spark.databricks.delta.optimize.maxFileSize"


@dataclass
class TableUpkeep:
    """What maintain did (or, in a dry run, would do) to one table."""

    name: str  # state | events | quarantine
    table: str
    dry_run: bool
    retain_days: int
    layout: str  # how compaction lays the files out
    exists: bool = True
    version_before: int | None = None
    version_after: int | None = None
    files_before: int = 0
    bytes_before: int = 0
    files_after: int | None = None  # None in a dry run
    bytes_after: int | None = None
    compacted_files: int = 0  # small files rewritten (a dry run: that would be)
    compacted_into: int | None = None  # the files they became (unknown in a dry run)
    removed_files: int = 0  # files outside the window deleted from storage
    removed_bytes: int = 0
    checkpoint_version: int | None = None
    commits: list[int] = field(default_factory=list)  # the versions maintain wrote

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def maintain(
    spark: SparkSession,
    config: Config,
    tables: dict[str, str],
    *,
    dry_run: bool = False,
) -> list[TableUpkeep]:
    """Maintain each of `tables` (name -> location; the state table first). A state table
    that does not exist is a usage error; a missing events or quarantine table is reported
    and left alone."""
    from pipelines.io.tables import describe

    results = []
    for name, uri in tables.items():
        if describe(spark, uri, f"{name} table", config.s3) is None:  # nothing there yet
            if name == "state":
                raise UsageError(f"state table {uri} is not a Delta table")
            results.append(
                TableUpkeep(name, uri, dry_run, config.tables.retain_days, "", exists=False)
            )
            continue
        results.append(_maintain_table(spark, config, name, uri, dry_run))
    return results


def _maintain_table(
    spark: SparkSession, config: Config, name: str, uri: str, dry_run: bool
) -> TableUpkeep:
    from delta.tables import DeltaTable

    from pipelines.io.commits import commit_metadata, retry_conflicts

    days = config.tables.retain_days
    by_key = name == "events"
    upkeep = TableUpkeep(
        name, uri, dry_run, days, "z-order by key within buckets" if by_key else "compaction"
    )
    files = _files(uri, config)
    upkeep.version_before = files.version
    upkeep.files_before, upkeep.bytes_before = files.count, files.bytes
    if dry_run:
        upkeep.compacted_files = files.compactable(spark, every_file=by_key)
        upkeep.removed_files, upkeep.removed_bytes = _vacuum_dry_run(spark, uri, days)
        return upkeep

    metadata = {"writer": "backfill maintain", "user": getpass.getuser(), "retain_days": days}
    with commit_metadata(spark, metadata):
        _set_retention(spark, uri, days)

        def compact() -> Any:
            optimize = DeltaTable.forPath(spark, uri).optimize()
            if not by_key:
                return optimize.executeCompaction().first()
            largest = str(config.events.max_file_mb * 1024 * 1024)
            with _session_conf(spark, MAX_FILE_SIZE_CONF, largest):
                return optimize.executeZOrderBy("key").first()

        row, _ = retry_conflicts(uri, "compaction", compact)
    metrics = row["metrics"] if row is not None else None
    if metrics is not None:
        upkeep.compacted_files = int(metrics["numFilesRemoved"])
        upkeep.compacted_into = int(metrics["numFilesAdded"])
    upkeep.removed_files, upkeep.removed_bytes = _vacuum(spark, uri, days)
    upkeep.checkpoint_version = _checkpoint(spark, uri)
    after = _files(uri, config)
    upkeep.version_after = after.version
    upkeep.files_after, upkeep.bytes_after = after.count, after.bytes
    upkeep.commits = list(range(files.version + 1, after.version + 1))
    return upkeep


@dataclass(frozen=True)
class _Files:
    version: int
    count: int
    bytes: int
    sizes: list[tuple[tuple[Any, ...], int]]  # (partition values, size) per file

    def compactable(self, spark: SparkSession, every_file: bool) -> int:
        """The files OPTIMIZE would rewrite: in each partition holding two or more small
        files, those files (for a Z-order, every file of such a partition)."""
        limit = int(spark.conf.get(MIN_FILE_SIZE_CONF, str(MIN_FILE_SIZE_DEFAULT)) or 0)
        small = Counter(part for part, size in self.sizes if size < limit)
        every = Counter(part for part, _ in self.sizes)
        chosen = every if every_file else small
        return sum(n for part, n in chosen.items() if small[part] >= 2)


def _files(uri: str, config: Config) -> _Files:
    """The live files of the table's latest version, from its log (delta-rs)."""
    import pyarrow as pa

    table = delta_log.open_table(uri, config.s3)
    actions = pa.table(table.get_add_actions(flatten=True))
    partitions = [name for name in actions.column_names if name.startswith("partition.")]
    sizes = actions.column("size_bytes").to_pylist()
    values = [actions.column(n).to_pylist() for n in partitions]
    parts = list(zip(*values, strict=True)) if partitions else [()] * len(sizes)
    keyed = list(zip(parts, sizes, strict=True))
    return _Files(table.version(), len(sizes), int(sum(sizes)), keyed)


@contextmanager
def _session_conf(spark: SparkSession, name: str, value: str) -> Iterator[None]:
    """`name` set to `value` for the block, then back to what it was (or unset)."""
    previous = spark.conf.get(name, None)
    spark.conf.set(name, value)
    try:
        yield
    finally:
        if previous is None:
            spark.conf.unset(name)
        else:
            spark.conf.set(name, previous)


def _set_retention(spark: SparkSession, uri: str, days: int) -> None:
    """The table states its window, so that any VACUUM (ours or another tool's) keeps it,
    and keeps its log at least as long (Delta's default log retention is 30 days)."""
    from pipelines.io.tables import table_properties

    wanted = {RETENTION_PROPERTY: f"interval {days} days"}
    if days > LOG_RETENTION_DEFAULT_DAYS:
        wanted[LOG_RETENTION_PROPERTY] = f"interval {days} days"
    current = table_properties(spark, uri)
    changed = {k: v for k, v in wanted.items() if current.get(k) != v}
    if changed:
        settings = ", ".join(f"'{k}' = '{v}'" for k, v in changed.items())
        spark.sql(f"ALTER TABLE delta.`{uri}` SET TBLPROPERTIES ({settings})")


def _vacuum(spark: SparkSession, uri: str, days: int) -> tuple[int, int]:
    """VACUUM outside the window; the files and bytes it deleted, from its own log entries."""
    from delta.tables import DeltaTable

    before = _latest_version(spark, uri)
    with _session_conf(spark, VACUUM_LOGGING_CONF, "true"):
        spark.sql(f"VACUUM delta.`{uri}` RETAIN {days * 24} HOURS").collect()
    rows = (
        DeltaTable.forPath(spark, uri)
        .history()
        .where(f"version > {before}")
        .select("operation", "operationMetrics")
        .collect()  # VACUUM START and END: two rows
    )
    files = size = 0
    for row in rows:
        metrics = row["operationMetrics"] or {}
        if row["operation"] == VACUUM_START:
            size = int(metrics.get("sizeOfDataToDelete", 0))
        elif row["operation"] == "VACUUM END":
            files = int(metrics.get("numDeletedFiles", 0))
    return files, size if files else 0


def _vacuum_dry_run(spark: SparkSession, uri: str, days: int) -> tuple[int, int]:
    """The files and bytes VACUUM would delete now (it lists empty folders too: not counted)."""
    dry_run = spark.sql(f"VACUUM delta.`{uri}` RETAIN {days * 24} HOURS DRY RUN")
    jvm: Any = spark.sparkContext._jvm
    hadoop_conf = spark.sparkContext._jsc.hadoopConfiguration()
    files = size = 0
    for row in dry_run.collect():  # the paths it would delete
        path = jvm.org.apache.hadoop.fs.Path(row[0])
        status = path.getFileSystem(hadoop_conf).getFileStatus(path)
        if status.isFile():
            files, size = files + 1, size + int(status.getLen())
    return files, size


def _checkpoint(spark: SparkSession, uri: str) -> int:
    """A checkpoint of the latest version: readers start from it instead of replaying the
    commits; Delta also drops log entries older than the log's retention then."""
    jvm: Any = spark.sparkContext._jvm
    delta_log_ = jvm.org.apache.spark.sql.delta.DeltaLog.forTable(spark._jsparkSession, uri)
    delta_log_.checkpoint()
    return _latest_version(spark, uri)


def _latest_version(spark: SparkSession, uri: str) -> int:
    from pipelines.io.tables import table_version

    version = table_version(spark, uri)
    assert version is not None
    return version


def format_upkeep(upkeep: TableUpkeep) -> str:
    """What maintain did to one table, in a line or two."""
    head = f"{upkeep.name} {upkeep.table}"
    if not upkeep.exists:
        return f"{head}: no table there yet; nothing to do"
    before = f"{_files_count(upkeep.files_before)}, {_size(upkeep.bytes_before)}"
    window = f"older than the {upkeep.retain_days}-day window"
    if upkeep.dry_run:
        return (
            f"{head}: {before} at version {upkeep.version_before}; would compact "
            f"{_files_count(upkeep.compacted_files)} ({upkeep.layout}), remove "
            f"{_files_count(upkeep.removed_files)} ({_size(upkeep.removed_bytes)}) {window}, "
            f"and write a checkpoint; changed nothing"
        )
    after = f"{_files_count(upkeep.files_after or 0)}, {_size(upkeep.bytes_after or 0)}"
    compacted = (
        f"compacted {_files_count(upkeep.compacted_files)} into "
        f"{_files_count(upkeep.compacted_into or 0)} ({upkeep.layout})"
        if upkeep.compacted_files
        else "nothing to compact"
    )
    return (
        f"{head}: {before} -> {after}; {compacted}; removed {_files_count(upkeep.removed_files)} "
        f"({_size(upkeep.removed_bytes)}) {window}; checkpoint at version "
        f"{upkeep.checkpoint_version}"
    )


def _files_count(n: int) -> str:
    return f"{n:,} file" if n == 1 else f"{n:,} files"


def _size(n: int) -> str:
    return f"{n / 1e6:,.1f} MB" if n >= 100_000 else f"{n / 1e3:,.1f} kB"
