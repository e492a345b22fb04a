"""How every Delta commit of a run is made: with its metadata, idempotently when asked, and
again after a concurrent writer's conflicting commit."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import delta.exceptions
from delta.tables import DeltaMergeBuilder, DeltaTable
from pyspark.errors import PySparkException
from pyspark.sql import DataFrame, Row, SparkSession

from pipelines.errors import RunFailed

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


@dataclass(frozen=True)
class MergeResult:
    inserted: int
    updated: int
    deleted: int
    version: int
    attempts: int = 1
    # The version the committing transaction read: a version above the one the run looked at
    # before means another writer committed in between.
    read_version: int | None = None


@contextmanager
def commit_metadata(spark: SparkSession, metadata: dict[str, Any]) -> Iterator[None]:
    """Attach `metadata` as `userMetadata` to the Delta commits made inside the block.

    MERGE takes no per-call metadata (delta-io/delta#857), so it rides on the session conf.
    """
    set_commit_metadata(spark, metadata)
    try:
        yield
    finally:
        spark.conf.unset(USER_METADATA_CONF)


def set_commit_metadata(spark: SparkSession, metadata: dict[str, Any]) -> None:
    """Set the `userMetadata` of the next commits (inside `commit_metadata`'s block)."""
    spark.conf.set(USER_METADATA_CONF, json.dumps(metadata, sort_keys=True, default=str))


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


def merge_into(
    spark: SparkSession,
    uri: str,
    what: str,
    table: Callable[[], DeltaTable],
    source_df: DataFrame,
    on: str,
    clauses: Callable[[DeltaMergeBuilder], DeltaMergeBuilder],
    before_attempt: Callable[[], None] | None = None,
) -> MergeResult:
    """MERGE `source_df` (`s`) into the table (`t`, made by `table` if missing) on `on`,
    with `clauses`; again after a concurrent writer's conflicting commit. `before_attempt`
    runs before each attempt (to fit the commit's metadata to the table as it is then)."""

    def attempt() -> MergeResult:
        if before_attempt is not None:
            before_attempt()
        builder = table().alias("t").merge(source_df.alias("s"), on)
        return merge_metrics(spark, uri, clauses(builder).execute().first())

    result, attempts = retry_conflicts(uri, what, attempt)
    return replace(result, attempts=attempts)


def merge_metrics(spark: SparkSession, uri: str, metrics: Row | None) -> MergeResult:
    latest = DeltaTable.forPath(spark, uri).history(1).select("version", "readVersion").first()
    assert latest is not None
    read_version = latest["readVersion"]
    return MergeResult(
        inserted=int(metrics["num_inserted_rows"]) if metrics else 0,
        updated=int(metrics["num_updated_rows"]) if metrics else 0,
        deleted=int(metrics["num_deleted_rows"]) if metrics else 0,
        version=int(latest["version"]),
        read_version=None if read_version is None else int(read_version),
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
