"""What each `backfill` subcommand does, once its arguments are parsed."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.config import Config, load_config
from pipelines.errors import ExitCode, UsageError
from pipelines.launch import ConsoleProgress, launch
from pipelines.report import format_change, format_commit, format_diff_summary, json_default

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from pipelines.generate.log import FaultRates, GeneratedLog

# The config settings flags override, by the flag a message should name.
OVERRIDE_FLAGS = {
    "fold": "--fold",
    "spark.master": "--master",
    "spark.shuffle_partitions": "--shuffle-partitions",
    "quarantine.max_ratio": "--max-quarantine-ratio",
    "tables.retain_days": "--retain-days",
    "metrics.pushgateway": "--metrics-push",
    "metrics.file": "--metrics-file",
    "lineage.target": "--lineage",
}


def load_run_config(args: argparse.Namespace) -> Config:
    """The config file, then flags on top; checks the fold before any Spark work."""
    from pipelines.folds import get_fold

    config = load_config(args.config).with_overrides(
        flags=OVERRIDE_FLAGS,
        **{
            "fold": getattr(args, "fold", None),
            "spark.master": args.master,
            "spark.shuffle_partitions": getattr(args, "shuffle_partitions", None),
            "quarantine.max_ratio": getattr(args, "max_quarantine_ratio", None),
            "tables.retain_days": getattr(args, "retain_days", None),
            "metrics.pushgateway": getattr(args, "metrics_push", None),
            "metrics.file": getattr(args, "metrics_file", None),
            "lineage.target": getattr(args, "lineage", None),
        },
    )
    get_fold(config.fold, config.fold_options)
    return config


def cmd_run(args: argparse.Namespace) -> int:
    from pipelines.io.sources import DateWindow, check_sources
    from pipelines.run import RunRequest, new_run_id

    config = load_run_config(args)
    if (args.txn_app_id is None) != (args.txn_version is None):
        raise UsageError("--txn-app-id and --txn-version go together")
    if args.from_date and args.to_date and args.from_date > args.to_date:
        raise UsageError(f"--from {args.from_date} is after --to {args.to_date}")
    progress = ConsoleProgress()

    def sources_found() -> None:
        for stats in check_sources(args.source, config.s3):
            more = "+" if stats.truncated else ""
            progress(f"{stats.uri}: {stats.objects:,}{more} objects, {stats.bytes / 1e6:,.1f} MB")

    request = RunRequest(
        sources=args.source,
        table=args.table,
        quarantine_table=args.quarantine or "",
        events_table=args.events_table or "",
        full=args.full,
        window=DateWindow(args.from_date, args.to_date),
        dry_run=args.dry_run,
        report_path=args.report,
        run_id=args.run_id or new_run_id(),
        txn=(args.txn_app_id, args.txn_version) if args.txn_app_id is not None else None,
    )
    return launch(config, request, progress, sources_found)


def cmd_redrive(args: argparse.Namespace) -> int:
    """A run of section 7 over quarantined records (contract section 11)."""
    from pipelines.io.locations import local_path
    from pipelines.run import RedriveFilter, RunRequest, new_run_id
    from pipelines.run.preflight import nothing_to_redrive
    from pipelines.schema import default_quarantine_uri

    config = load_run_config(args)
    quarantine = args.quarantine or default_quarantine_uri(args.table)

    def quarantine_found() -> None:
        local = local_path(quarantine)
        if local is not None and not (local / "_delta_log").is_dir():
            raise nothing_to_redrive(quarantine)  # said before Spark starts

    request = RunRequest(
        sources=[quarantine],
        table=args.table,
        quarantine_table=quarantine,
        events_table=args.events_table or "",
        dry_run=args.dry_run,
        report_path=args.report,
        run_id=new_run_id(),
        redrive=RedriveFilter(tuple(args.reason or ()), args.quarantined_by),
    )
    return launch(config, request, ConsoleProgress(), quarantine_found)


def cmd_history(args: argparse.Namespace) -> int:
    """Read from the table's log without Spark (pipelines.versions.history_from_log)."""
    from pipelines import versions

    commits = versions.history_from_log(args.table, load_config(args.config).s3)
    for commit in commits:
        if args.json:
            print(json.dumps(commit, sort_keys=True, default=json_default))
        else:
            print(format_commit(commit))
    return ExitCode.OK


def cmd_diff(args: argparse.Namespace) -> int:
    """Net the change feed without Spark; where it does not cover the range, Spark compares
    the two snapshots."""
    from pipelines import versions

    logged = versions.diff_from_log(
        args.table, load_config(args.config).s3, args.from_version, args.to_version
    )
    if logged is not None:
        _print_changes(args, logged.changes)
        summary = logged.summary()
    else:
        with _session(args) as spark:
            table_diff = versions.diff(spark, args.table, args.from_version, args.to_version)
            rows = table_diff.changes.orderBy("key").toLocalIterator()  # streamed
            _print_changes(args, (row.asDict(recursive=True) for row in rows))
            summary = table_diff.summary()
    print(format_diff_summary(summary), file=sys.stderr if args.json else sys.stdout)
    return ExitCode.OK


def _print_changes(args: argparse.Namespace, changes: Iterable[dict[str, Any]]) -> None:
    for index, change in enumerate(changes):
        if args.json:
            print(json.dumps(change, sort_keys=True, default=json_default))
        elif index < args.limit:
            print(format_change(change))


def cmd_rollback(args: argparse.Namespace) -> int:
    from pipelines import versions

    with _session(args) as spark:
        undone, new_version = versions.rollback(spark, args.table, args.to_version, args.reason)
        summary = undone.summary()
    print(
        f"restored {args.table} to version {args.to_version} as version {new_version}; "
        f"this undid the changes of versions {args.to_version + 1} to {summary['to_version']}:"
    )
    print(format_diff_summary(summary))
    return ExitCode.OK


def cmd_maintain(args: argparse.Namespace) -> int:
    """Compact, vacuum and checkpoint the state table and its events and quarantine tables."""
    from pipelines.io.locations import check_table_location
    from pipelines.maintain import format_upkeep, maintain
    from pipelines.schema import default_events_uri, default_quarantine_uri

    tables = {
        "state": args.table,
        "events": args.events_table or default_events_uri(args.table),
        "quarantine": args.quarantine or default_quarantine_uri(args.table),
    }
    for name, uri in tables.items():
        check_table_location(uri, f"{name} table")
    config = load_run_config(args)
    with _session(args, config) as spark:
        results = maintain(spark, config, tables, dry_run=args.dry_run)
    for upkeep in results:
        if args.json:
            print(json.dumps(upkeep.to_json(), sort_keys=True))
        else:
            print(format_upkeep(upkeep))
    return ExitCode.OK


def cmd_verify(args: argparse.Namespace) -> int:
    """The version's fingerprint against its files (and, --deep, its rows against the fold of
    the events): exit 0 with one line, or 1 with one line naming the first keys that differ."""
    from pipelines.verify import verify

    config = load_run_config(args)
    with _session(args, config) as spark:
        result = verify(spark, config, args.table, args.events_table, args.version, args.deep)
        if args.json:
            for difference in result.rows():
                print(json.dumps(difference, sort_keys=True, default=json_default))
    print(result.verdict(), file=sys.stderr if args.json else sys.stdout)
    return ExitCode.OK if result.verified else ExitCode.FAILED


@contextmanager
def _session(args: argparse.Namespace, config: Config | None = None) -> Iterator[SparkSession]:
    from pipelines.session import build_session

    spark = build_session(config or load_run_config(args))
    try:
        yield spark
    finally:
        spark.stop()


def generate_from_args(
    out: Path, args: argparse.Namespace, faults: FaultRates, fold: str = "balance"
) -> GeneratedLog:
    """`generate_log` of `fold`'s events with the generator flags shared by `generate` and
    `demo`."""
    from pipelines.generate.log import generate_log

    return generate_log(
        out,
        events=args.events,
        keys=args.keys,
        seed=args.seed,
        faults=faults,
        days=args.days,
        files_per_day=args.files_per_day,
        data_format=args.format,
        gzip_files=args.gzip,
        fold=fold,
    )


def cmd_generate(args: argparse.Namespace) -> int:
    import tempfile
    from pathlib import Path

    from pipelines.io import s3

    faults = _fault_rates(args)
    to_s3 = s3.is_s3(args.out)
    s3_config = load_config(args.config).s3 if to_s3 else None
    with tempfile.TemporaryDirectory(prefix="backfill-generate-") as staging:
        local_out = Path(staging) if to_s3 else Path(args.out)
        log = generate_from_args(local_out, args, faults, fold=args.fold)
        if s3_config is not None:
            s3.upload_tree(local_out, args.out, s3_config)
    injected = ", ".join(f"{k} {v:,}" for k, v in sorted(log.injected.items()))
    print(f"wrote {log.lines_written:,} lines in {len(log.files)} files under {args.out}")
    print(f"faults: {injected}")
    return ExitCode.OK


def cmd_demo(args: argparse.Namespace) -> int:
    from pipelines.demo import run_demo

    config = load_run_config(args)
    return run_demo(args, config, _fault_rates(args), ConsoleProgress())


def _fault_rates(args: argparse.Namespace) -> FaultRates:
    from pipelines.generate.log import FaultRates

    rates = {
        name: getattr(args, f"{name}_rate")
        for name in ("duplicate", "conflict", "late", "lost", "disorder", "garbage")
    }
    for name, rate in rates.items():
        if not 0.0 <= rate <= 1.0:
            raise UsageError(f"--{name}-rate must be between 0 and 1, got {rate}")
    return FaultRates(**rates)
