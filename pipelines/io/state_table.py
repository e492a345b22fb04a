"""The state table: one row per key, MERGEd from the fold's rows, with the events-table
version it reflects (its mark) recorded in the same commit."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from pipelines.fingerprint import user_metadata
from pipelines.folds import Fold
from pipelines.io.commits import MergeResult, merge_into
from pipelines.io.table_properties import FOLD_PROPERTY, MEASURE_PROPERTY
from pipelines.io.tables import ensure_table
from pipelines.schema import DELETED


def state_properties(fold: Fold) -> dict[str, str]:
    """What a state table records about its fold, for readers that do not know it (`diff`)."""
    properties = {FOLD_PROPERTY: fold.name}
    if fold.measure:
        properties[MEASURE_PROPERTY] = fold.measure
    return properties


def merge_state(
    spark: SparkSession,
    uri: str,
    state_df: DataFrame,
    fold: Fold,
    before_attempt: Callable[[], None] | None = None,
) -> MergeResult:
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

    return merge_into(
        spark,
        uri,
        "MERGE",
        lambda: ensure_table(spark, uri, fold.state_schema, properties=state_properties(fold)),
        source_df,
        "t.key = s.key",
        lambda merge: (
            merge.whenMatchedDelete(condition=f"s.{DELETED}")
            .whenMatchedUpdate(
                condition=f"NOT s.{DELETED} AND ({changed})",
                set={c: f"s.`{c}`" for c in fold.state_columns},
            )
            .whenNotMatchedInsert(condition=f"NOT s.{DELETED}", values=values)
        ),
        before_attempt,
    )


def folded_events_version(commit_infos: list[dict[str, Any]], events_id: str) -> int | None:
    """The events-table version the state's rows reflect, from the state table's commits
    (newest first, up to the version read), or None if unknown.

    Each backfill commit records it in its `userMetadata` (with the events table's id). A
    RESTORE brings back an older version's rows, so the mark of that version applies. None
    (no mark, another events table, a restore by timestamp) means: fold every key.
    """
    newest_visible: int | None = None
    for commit in commit_infos:
        version = int(commit["version"])
        if newest_visible is not None and version > newest_visible:
            continue
        if commit.get("operation") == "RESTORE":
            restored = (commit.get("operationParameters") or {}).get("version")
            if restored is None:
                return None
            newest_visible = int(restored)
            continue
        if commit.get("operation") != "MERGE":
            continue  # e.g. the CREATE of a run killed before its MERGE: it folded nothing
        metadata = user_metadata(commit)
        if metadata.get("events_table_id") == events_id and "events_version" in metadata:
            return int(metadata["events_version"])
    return None
