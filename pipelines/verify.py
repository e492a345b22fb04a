"""`backfill verify` (contract section 10): prove a state version is what the pipeline wrote,
and with `--deep` that it is the fold of its events.

The quick check reads the version's rows once and compares their fingerprint with the one
the log gives the version (`pipelines.fingerprint.recorded`). A version that changed rows
without recording one was written outside the pipeline: its rows are compared with those of
the last version that carries one, and the keys that differ are named. A fingerprint that
does not match its files (a file edited, lost or added outside the pipeline) is explained
key by key by the deep check, which runs then whether asked for or not.

The deep check re-folds every key from the events table's latest version and compares row
by row. Each key that differs gets a cause, found by folding that key again from the events
version the state says it reflects (its mark): a stored row that is not the fold of the
events it reflects was edited (or its events were changed outside the pipeline at or before
the mark); a stored row that is, but differs from the fold of the latest events, awaits
events stored after the mark, by a run interrupted between its commits (the next run
repairs it) or by a writer outside the pipeline.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from pipelines import fingerprint as fp
from pipelines import retention
from pipelines.config import Config
from pipelines.errors import UsageError
from pipelines.failures import describe_failure
from pipelines.folds import Fold, get_fold
from pipelines.io.state_table import folded_events_version
from pipelines.io.table_properties import FOLD_PROPERTY
from pipelines.io.tables import TableInfo, describe, read_version
from pipelines.report import json_default
from pipelines.schema import DELETED, default_events_uri
from pipelines.transforms.fingerprint import fingerprint_of
from pipelines.transforms.fold import fold_states

SHOWN = 3  # differing keys the one-line verdict names
# Why a key differs, as `--json` and the verdict name it.
WRITTEN_OUTSIDE = "state_written_outside"
ROW_EDITED = "state_row_edited"
EVENTS_OUTSIDE = "events_changed_outside"
INTERRUPTED = "interrupted_run"


@dataclass
class Verification:
    """What verify found for one version; `differences` are streamed, one dict per key."""

    table: str
    version: int
    found: fp.Fingerprint | None  # None: its files cannot be read
    recorded: fp.Recorded | None
    problems: list[str] = field(default_factory=list)
    differing: int = 0
    causes: dict[str, int] = field(default_factory=dict)  # differing keys by cause
    first: list[dict[str, Any]] = field(default_factory=list)
    differences: DataFrame | None = None
    deep_against: int | None = None  # the events version the deep check folded

    @property
    def verified(self) -> bool:
        return not self.problems and self.differing == 0

    def rows(self) -> Iterator[dict[str, Any]]:
        """One dict per differing key: key, cause, stored and expected (None: no row)."""
        if self.differences is None:
            return iter(())
        return (
            row.asDict(recursive=True) for row in self.differences.orderBy("key").toLocalIterator()
        )

    def verdict(self) -> str:
        where = f"version {self.version} of {self.table}"
        if self.verified:
            recorded = self.recorded
            assert recorded is not None
            at = "" if recorded.version == self.version else f" at version {recorded.version}"
            line = f"{where} verifies: {self.found}, as its commit{at} records"
            if self.deep_against is not None:
                line += f"; every key equals the fold of events version {self.deep_against}"
            return line
        line = f"{where} does not verify: " + "; ".join(self.problems)
        if self.differing:
            shown = ", ".join(
                f"{d['key']} (stored {_text(d['stored'])}, expected {_text(d['expected'])})"
                for d in self.first
            )
            more = (
                f" and {self.differing - len(self.first):,} more" if self.differing > SHOWN else ""
            )
            keys = "key differs" if self.differing == 1 else "keys differ"
            line += f"; {self.differing:,} {keys}: {shown}{more}"
        return line


def verify(
    spark: SparkSession,
    config: Config,
    uri: str,
    events_uri: str | None = None,
    version: int | None = None,
    deep: bool = False,
) -> Verification:
    """Verify state `version` (default: the latest); `--deep` folds from `events_uri`
    (default: `<uri>_events`)."""
    from pipelines.versions import check_versions

    state = describe(spark, uri, "state table", config.s3)
    if state is None:
        raise UsageError(f"{uri} is not a Delta table")
    version = state.version if version is None else version
    check_versions(uri, state.version, version)
    commits = state.commit_infos()
    retention.check_inside(uri, commits, state.properties, version)
    events_uri = events_uri or default_events_uri(uri)
    rows_df = read_version(spark, uri, version)
    recorded = fp.recorded(commits, version)
    try:
        found = fingerprint_of(rows_df)
    except Exception as exc:  # a file lost or rewritten unreadable outside the pipeline
        result = Verification(uri, version, None, recorded)
        result.problems.append(f"its files cannot be read: {describe_failure(exc, None, None)}")
        return result
    result = Verification(uri, version, found, recorded)
    columns = [c for c in rows_df.columns if c != "key"]
    if recorded is None:
        result.problems.append(
            "its log no longer reaches a commit that records a fingerprint for it"
        )
    elif recorded.fingerprint is None:
        result.problems.append(recorded.describe_outside())
        base = _last_fingerprinted(commits, recorded.version - 1)
        expected_df = read_version(spark, uri, base) if base is not None else rows_df.limit(0)
        what = f"version {base}, the last that carries one" if base is not None else "no rows"
        result.problems[-1] += f"; compared with {what}"
        differences = _differences(rows_df, expected_df, columns)
        cause = F.lit(WRITTEN_OUTSIDE).alias("cause")
        _keep(result, differences.select("key", cause, "stored", "expected"))
        return result
    elif recorded.fingerprint != found:
        result.problems.append(
            f"its files hold {found}, its commit records {recorded.fingerprint}: files were "
            "changed outside the pipeline"
        )
        deep = True
    if deep:
        _deep(spark, config, result, rows_df, state, events_uri, commits)
    return result


def _last_fingerprinted(commits: list[dict[str, Any]], version: int) -> int | None:
    for older in range(version, -1, -1):
        found = fp.recorded(commits, older)
        if found is None:
            return None
        if found.fingerprint is not None:
            return older
    return None


def _deep(
    spark: SparkSession,
    config: Config,
    result: Verification,
    rows_df: DataFrame,
    state: TableInfo,
    events_uri: str,
    commits: list[dict[str, Any]],
) -> None:
    events = describe(spark, events_uri, "events table", config.s3)
    if events is None:
        raise UsageError(
            f"verify --deep re-folds from the events table, and there is none at {events_uri} "
            "(--events-table names another)"
        )
    fold = _table_fold(config, state)
    columns = fold.state_columns
    expected_df = _folded(read_version(spark, events_uri, events.version), fold, rows_df.schema)
    result.deep_against = events.version
    mark = folded_events_version(
        [c for c in commits if int(c["version"]) <= result.version], events.table_id
    )
    outside = _outside_commits(events.commit_infos())
    before_mark = [c for c in outside if mark is None or int(c["version"]) <= mark]
    after_mark = [c for c in outside if mark is not None and int(c["version"]) > mark]
    differences = _differences(rows_df, expected_df, columns)
    if mark is None:
        with_cause = differences.withColumn(
            "cause", F.lit(EVENTS_OUTSIDE if before_mark else ROW_EDITED)
        )
    else:  # each differing key folded again from the events the state says it reflects
        at_mark_events = read_version(spark, events_uri, mark).join(
            differences.select("key"), "key", "left_semi"
        )
        at_mark = _folded(at_mark_events, fold, rows_df.schema).select(
            "key", F.struct(*columns).alias("at_mark")
        )
        faithful = F.col("stored").eqNullSafe(F.col("at_mark"))
        cause = F.when(faithful, EVENTS_OUTSIDE if after_mark else INTERRUPTED).otherwise(
            EVENTS_OUTSIDE if before_mark else ROW_EDITED
        )
        with_cause = differences.join(at_mark, "key", "left").select(
            "key", cause.alias("cause"), "stored", "expected"
        )
    _keep(result, with_cause)
    result.problems.extend(
        f"{_explain(cause, mark, events.version, before_mark + after_mark)} ({keys:,} keys)"
        for cause, keys in sorted(result.causes.items())
    )


def _differences(stored_df: DataFrame, expected_df: DataFrame, columns: list[str]) -> DataFrame:
    """Keys whose stored row differs from the expected one: key, stored, expected (structs of
    the state columns, NULL where there is no row)."""
    stored = stored_df.select("key", F.struct(*columns).alias("stored"))
    expected = expected_df.select("key", F.struct(*columns).alias("expected"))
    joined = stored.join(expected, "key", "full_outer")
    return joined.filter(~F.col("stored").eqNullSafe(F.col("expected")))


def _keep(result: Verification, differences: DataFrame) -> None:
    """The differences (key, cause, stored, expected) counted, and the first few kept."""
    differences = differences.persist()
    result.differences = differences
    by_cause = differences.groupBy("cause").count().collect()  # one row per cause
    result.causes = {row["cause"]: row["count"] for row in by_cause}
    result.differing = sum(result.causes.values())
    result.first = [
        row.asDict(recursive=True) for row in differences.orderBy("key").limit(SHOWN).collect()
    ]


def _folded(events_df: DataFrame, fold: Fold, schema: StructType) -> DataFrame:
    """Every key's state folded from `events_df`, typed as the state table types it."""
    folded = fold_states(events_df, fold).filter(~F.col(DELETED))
    return folded.select(*[F.col(f.name).cast(f.dataType).alias(f.name) for f in schema.fields])


def _outside_commits(commits: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Commits of the events table that changed rows and were not made by the pipeline."""
    outside = []
    for commit in commits:
        operation = str(commit.get("operation") or "")
        writer = str(fp.user_metadata(commit).get("writer") or "")
        if operation in fp.NO_ROW_CHANGE or operation in fp.EMPTY_TABLE:
            continue
        if not writer.startswith("backfill"):
            outside.append(commit)
    return sorted(outside, key=lambda c: int(c["version"]))


def _explain(cause: str, mark: int | None, latest: int, outside: list[dict[str, Any]]) -> str:
    if cause == INTERRUPTED:
        return (
            f"the state reflects events version {mark} and events up to version {latest} were "
            "stored since by a run interrupted before its state commit: the next run "
            "repairs it"
        )
    if cause == EVENTS_OUTSIDE:
        named = ", ".join(f"{c['version']} ({c.get('operation')})" for c in outside[:3])
        return f"the events table was changed outside the pipeline, at events version {named}"
    return "state rows were edited outside the pipeline"


def _table_fold(config: Config, state: TableInfo) -> Fold:
    """The fold that made the table: the config's when it names the one the table records,
    else the recorded one by name."""
    name = state.properties.get(FOLD_PROPERTY) or config.fold
    if name == config.fold:
        return get_fold(config.fold, config.fold_options)
    try:
        return get_fold(name, {})
    except UsageError as exc:
        raise UsageError(
            f"the state table was made by the fold {name!r}, which cannot be loaded here "
            f"({exc}); pass --fold with its import path"
        ) from exc


def _text(row: dict[str, Any] | None) -> str:
    if row is None:
        return "no row"
    return json.dumps(row, sort_keys=True, default=json_default)
