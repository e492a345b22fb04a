"""The analyst's API for notebooks: `from pipelines import api`, no command line needed.

spark = api.session()
api.history("/lake/balances")                      # a pandas DataFrame, newest first
d = api.diff("/lake/balances", from_version=3)     # per-key changes since version 3
d.changes.orderBy(F.abs("delta").desc()).show()
api.dry_run(["/lake/events"], "/lake/balances")    # what a backfill would change
api.rollback("/lake/balances", to_version=3, reason="bad backfill")
api.verify("/lake/balances", version=3).verdict()   # is version 3 what the pipeline wrote?
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from pyspark.sql import DataFrame, SparkSession

from pipelines import versions
from pipelines.config import load_config
from pipelines.io import tables
from pipelines.io.sources import DateWindow
from pipelines.report import RunReport
from pipelines.run import RunRequest, run_backfill
from pipelines.verify import Verification
from pipelines.versions import TableDiff

__all__ = [
    "TableDiff",
    "Verification",
    "diff",
    "dry_run",
    "history",
    "read_version",
    "rollback",
    "session",
    "verify",
]


def session(config: str | Path | None = None, master: str | None = None) -> SparkSession:
    """The active Spark session, or a new Delta-enabled one from the config."""
    from pipelines.session import build_session

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    overrides: dict[str, Any] = {"spark.master": master}
    return build_session(load_config(config).with_overrides(**overrides))


def history(table: str) -> pd.DataFrame:
    """One row per version: timestamp, operation, userMetadata, operationMetrics."""
    return pd.DataFrame(versions.history(session(), table))


def read_version(table: str, version: int) -> DataFrame:
    """The table as it was at `version` (time travel); a version outside the retention
    window `backfill maintain` keeps is refused, naming the window."""
    spark = session()
    versions.check_inside_window(spark, table, version)
    return tables.read_version(spark, table, version)


def diff(table: str, from_version: int, to_version: int | None = None) -> TableDiff:
    """Per-key changes between two versions; `.changes` is a DataFrame, `.summary()` a dict."""
    return versions.diff(session(), table, from_version, to_version)


def rollback(table: str, to_version: int, reason: str) -> tuple[TableDiff, int]:
    """Restore `table` to `to_version`; returns what it undid and the new version."""
    return versions.rollback(session(), table, to_version, reason)


def verify(
    table: str,
    version: int | None = None,
    deep: bool = False,
    events_table: str | None = None,
    config: str | Path | None = None,
) -> Verification:
    """Whether `version` (default: the latest) is what the pipeline wrote, and with `deep`
    the fold of its events: `.verified`, `.verdict()`, `.rows()` per differing key."""
    from pipelines.verify import verify as verify_version

    return verify_version(session(), load_config(config), table, events_table, version, deep)


def dry_run(
    sources: list[str],
    table: str,
    config: str | Path | None = None,
    report: str | None = None,
    full: bool = False,
) -> RunReport:
    """Report what a backfill of the sources would change; commits nothing."""
    request = RunRequest(
        full=full,
        sources=list(sources),
        table=table,
        window=DateWindow(),
        dry_run=True,
        report_path=report,
    )
    return run_backfill(session(), load_config(config), request, progress=lambda message: None)
