"""`backfill demo`: a faulty live worker's table, corrected by a backfill, then a later night.

Act one: the live worker's state after the first days, corrected by the historical backfill
(the first run, which builds the events table). Act two: the last day arrives, with new
events, late events for earlier `seq`s and re-delivered copies; the nightly run reads only
that day's partitions and folds only the keys they touch.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from datetime import timedelta
from pathlib import Path

from pyspark.sql import SparkSession

from pipelines.commands import generate_from_args
from pipelines.config import Config
from pipelines.errors import ExitCode, UsageError
from pipelines.folds import Fold, get_fold
from pipelines.generate.live_worker import live_worker_states
from pipelines.generate.log import GENERATORS, FaultRates
from pipelines.io.commits import commit_metadata
from pipelines.io.sources import DateWindow
from pipelines.io.state_table import state_properties
from pipelines.io.tables import ensure_table, table_version
from pipelines.report import format_summary
from pipelines.run import Progress, RunRequest, run_backfill
from pipelines.session import build_session

MARKER = ".backfill-demo"


def run_demo(
    args: argparse.Namespace, config: Config, faults: FaultRates, progress: Progress
) -> int:
    workdir = _fresh_workdir(Path(args.workdir))
    events_dir, table = workdir / "events", str((workdir / "state").resolve())
    fold = get_fold(config.fold, config.fold_options)
    if fold.name not in GENERATORS:  # the live worker knows each one's events
        raise UsageError(
            f"the demo generates events for the built-in folds only ({', '.join(GENERATORS)}); "
            f"run your fold with `backfill run --fold {config.fold}`"
        )

    progress(f"generating {args.events:,} {fold.name} events for {args.keys:,} keys with faults")
    log = generate_from_args(events_dir, args, faults, fold=fold.name)
    progress(
        f"wrote {log.lines_written:,} lines in {len(log.files)} files: "
        + ", ".join(f"{k} {v:,}" for k, v in sorted(log.injected.items()))
    )
    if args.days < 2:
        raise UsageError("the demo needs at least two days of events; raise --days")
    # The last generated day, with the late events that spill past it.
    tonight = min(e.ingested_at.date() for e in log.delivered) + timedelta(days=args.days - 1)
    history = [e for e in log.delivered if e.ingested_at.date() < tonight]
    worker_rows = live_worker_states(history, seed=args.seed)

    progress("starting Spark (local mode, Delta on local disk)")
    spark = build_session(config, show_progress=sys.stderr.isatty())
    try:
        progress(f"writing the live worker's state for {len(worker_rows):,} keys to {table}")
        version = write_live_worker_table(spark, table, worker_rows, fold)
        progress(
            f"live worker table at version {version}; backfilling the history up to "
            f"{tonight - timedelta(days=1)}"
        )
        sources = [str(events_dir.resolve())]
        backfilled = run_backfill(
            spark,
            config,
            _request(sources, table, DateWindow(end=tonight - timedelta(days=1)), full=True),
            progress,
        )
        print()
        print(format_summary(backfilled))
        progress(f"the night of {tonight} arrives: late, re-delivered and new events")
        nightly = run_backfill(
            spark,
            config,
            _request(sources, table, DateWindow(start=tonight), report=workdir / "report.json"),
            progress,
        )
    finally:
        spark.stop()

    print()
    print(format_summary(nightly))
    print()
    print(f"The night's report is in {workdir / 'report.json'}. Look closer:")
    print(
        f"  spark.read.format('delta').option('versionAsOf', "
        f"{backfilled.table_version_before}).load('{table}')   # the live worker's state"
    )
    fold_flag = "" if fold.name == "balance" else f" --fold {fold.name}"
    print(
        f"  backfill run{fold_flag} --source {events_dir} --from {tonight} --table {table}"
        "   # a rerun changes nothing"
    )
    print(f"  backfill history --table {table}")
    print(f"  backfill diff --table {table} --from-version {backfilled.table_version_before}")
    return ExitCode.OK


def _request(
    sources: list[str],
    table: str,
    window: DateWindow,
    full: bool = False,
    report: Path | None = None,
) -> RunRequest:
    return RunRequest(
        sources=sources,
        table=table,
        window=window,
        full=full,
        report_path=str(report) if report else None,
    )


def write_live_worker_table(
    spark: SparkSession, table: str, rows: list[dict], fold: Fold | None = None
) -> int:
    """Write the live worker's state rows (`balance`'s by default) as a new version of
    `table`; returns that version."""
    fold = fold or get_fold("balance")
    with commit_metadata(spark, {"writer": "live-worker", "note": "state to be corrected"}):
        ensure_table(spark, table, fold.state_schema, properties=state_properties(fold))
        worker_df = spark.createDataFrame(rows, fold.state_schema)
        worker_df.write.format("delta").mode("append").save(table)
    version = table_version(spark, table)
    assert version is not None
    return version


def _fresh_workdir(workdir: Path) -> Path:
    """Empty `workdir` if an earlier demo made it; never delete a directory it did not make."""
    if workdir.exists():
        if not (workdir / MARKER).exists():
            if any(workdir.iterdir()):
                raise UsageError(f"{workdir} exists and was not made by the demo; pick --workdir")
        else:
            shutil.rmtree(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / MARKER).touch()
    return workdir
