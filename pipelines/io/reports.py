"""Where a run's report and a dry run's per-key changes are written: a local path or S3."""

from __future__ import annotations

from pathlib import Path

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from pipelines.config import S3Config
from pipelines.io import s3
from pipelines.report import RunReport

REPORTS_DIR = "_backfill_reports"  # inside the table's directory; Delta and VACUUM skip "_"


def write_report(report: RunReport, path: str, s3_config: S3Config) -> None:
    """Write the report as JSON to a local path or an S3 URI."""
    text = report.to_json() + "\n"
    if s3.is_s3(path):
        s3.put_text(path, text, s3_config)
        return
    target = Path(path.removeprefix("file://"))
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")


def report_beside_table(report: RunReport) -> str:
    """Where each run's report is kept next to the state table it changed."""
    return f"{report.table.rstrip('/')}/{REPORTS_DIR}/{report.run_id}.json"


def changes_path(report_path: str) -> str:
    """Where a dry run writes its per-key changes: a directory beside the report."""
    return report_path.removesuffix(".json") + ".changes"


def write_changes(changes_df: DataFrame, path: str) -> None:
    """The per-key changes a dry run would apply, as JSON Lines, written by Spark."""
    changed_df = changes_df.filter(F.col("change") != "unchanged").drop(
        "_mode", "_events_folded", "hash_before", "hash_after"
    )
    changed_df.coalesce(1).write.mode("overwrite").json(path)
