"""The `backfill` command line: `main(argv) -> int`, the same entry point under spark-submit."""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from typing import TYPE_CHECKING, NoReturn

from pipelines.config import Config, load_config
from pipelines.errors import BackfillError, UsageError
from pipelines.report import format_change, format_commit, format_diff_summary, json_default

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_QUARANTINE = 0, 1, 2, 3


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line (exit 2) instead of a usage dump."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="backfill",
        description="Recompute per-key state from a raw event log and MERGE it into Delta.",
    )
    parser.add_argument("--verbose", action="store_true", help="print tracebacks on failure")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = commands.add_parser("run", help="backfill the state table from raw events")
    run.add_argument(
        "--source",
        action="append",
        required=True,
        metavar="URI",
        help="file, directory or glob of JSON Lines or Parquet (repeatable)",
    )
    run.add_argument("--table", required=True, metavar="URI", help="state Delta table")
    run.add_argument(
        "--quarantine", metavar="URI", help="quarantine Delta table (default: <table>_quarantine)"
    )
    _add_config_flags(run)
    run.add_argument(
        "--from",
        dest="from_date",
        type=_parse_date,
        metavar="DATE",
        help="first dt= partition to read (YYYY-MM-DD)",
    )
    run.add_argument(
        "--to",
        dest="to_date",
        type=_parse_date,
        metavar="DATE",
        help="last dt= partition to read (YYYY-MM-DD)",
    )
    run.add_argument(
        "--dry-run", action="store_true", help="compute and report everything, commit nothing"
    )
    run.add_argument("--report", metavar="FILE", help="write the run report as JSON here")
    run.add_argument(
        "--max-quarantine-ratio",
        type=float,
        metavar="R",
        help="exit 3 and write no state when more than this share is quarantined",
    )
    run.add_argument("--run-id", help="id recorded in the report and every commit")
    run.add_argument(
        "--txn-app-id",
        metavar="ID",
        help="idempotent writes: with --txn-version, a repeat of a version already "
        "committed under this id is skipped (e.g. the scheduler's job name)",
    )
    run.add_argument(
        "--txn-version",
        type=int,
        metavar="N",
        help="increasing per --txn-app-id, e.g. the window's date as YYYYMMDD",
    )
    run.set_defaults(handler=_cmd_run)

    generate = commands.add_parser("generate", help="write a realistic event log with faults")
    generate.add_argument(
        "--out", required=True, metavar="DIR", help="a local directory or an s3:// / s3a:// prefix"
    )
    generate.add_argument("--config", metavar="FILE", help="YAML config, for its s3 settings")
    generate.add_argument("--events", type=int, required=True, metavar="N")
    generate.add_argument("--keys", type=int, required=True, metavar="K")
    _add_generator_flags(generate)
    generate.set_defaults(handler=_cmd_generate)

    history = commands.add_parser("history", help="each version of a table: who, why, what")
    history.add_argument("--table", required=True, metavar="URI")
    history.add_argument("--json", action="store_true", help="one JSON object per version")
    _add_session_flags(history)
    history.set_defaults(handler=_cmd_history)

    diff = commands.add_parser("diff", help="per-key changes between two versions")
    diff.add_argument("--table", required=True, metavar="URI")
    diff.add_argument("--from-version", type=int, required=True, metavar="N")
    diff.add_argument("--to-version", type=int, metavar="M", help="default: the latest")
    diff.add_argument("--json", action="store_true", help="one JSON object per changed key")
    diff.add_argument(
        "--limit",
        type=int,
        default=50,
        metavar="N",
        help="keys to list without --json (default %(default)s)",
    )
    _add_session_flags(diff)
    diff.set_defaults(handler=_cmd_diff)

    rollback = commands.add_parser("rollback", help="restore a table to an earlier version")
    rollback.add_argument("--table", required=True, metavar="URI")
    rollback.add_argument("--to-version", type=int, required=True, metavar="N")
    rollback.add_argument("--reason", help="recorded in the table's history")
    _add_session_flags(rollback)
    rollback.set_defaults(handler=_cmd_rollback)

    demo = commands.add_parser("demo", help="generate a log, a faulty state, and backfill it")
    demo.add_argument(
        "--workdir",
        default="backfill-demo",
        metavar="DIR",
        help="where the demo writes its events and tables (default: %(default)s)",
    )
    demo.add_argument("--events", type=int, default=200_000, metavar="N")
    demo.add_argument("--keys", type=int, default=5_000, metavar="K")
    _add_config_flags(demo)
    _add_generator_flags(demo)
    demo.set_defaults(handler=_cmd_demo)
    return parser


def _add_session_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="YAML config (default: conf/local.yaml)")
    parser.add_argument("--master", help="Spark master, e.g. local[2] (default from config)")


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    _add_session_flags(parser)
    parser.add_argument("--fold", help="fold to apply (default from config: balance)")
    parser.add_argument("--shuffle-partitions", type=int, metavar="N")


def _add_generator_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--days", type=int, default=5, help="dt= partitions to spread over")
    parser.add_argument("--files-per-day", type=int, default=4)
    parser.add_argument("--format", choices=("json", "parquet"), default="json")
    parser.add_argument("--gzip", action="store_true", help="write .jsonl.gz files")
    for fault, default, what in (
        ("duplicate", 0.03, "identical copies re-delivered"),
        ("conflict", 0.005, "copies with the same event_id and other content"),
        ("late", 0.02, "events ingested days later, into a later partition"),
        ("lost", 0.002, "events never written (holes in seq)"),
        ("disorder", 0.2, "share of lines moved out of order within a day"),
        ("garbage", 0.01, "malformed or invalid lines, per event"),
    ):
        parser.add_argument(
            f"--{fault}-rate",
            type=float,
            default=default,
            metavar="R",
            help=f"{what} (default {default})",
        )


def _parse_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date YYYY-MM-DD") from None


def load_run_config(args: argparse.Namespace) -> Config:
    """The config file, then flags on top; checks the fold before any Spark work."""
    from pipelines.folds import get_fold

    config = load_config(args.config).with_overrides(
        **{
            "fold": getattr(args, "fold", None),
            "spark.master": args.master,
            "spark.shuffle_partitions": getattr(args, "shuffle_partitions", None),
            "quarantine.max_ratio": getattr(args, "max_quarantine_ratio", None),
        }
    )
    get_fold(config.fold)
    return config


def _cmd_run(args: argparse.Namespace) -> int:
    from pipelines.io import s3
    from pipelines.io.sources import DateWindow, check_sources
    from pipelines.job import RunRequest, default_quarantine_uri, new_run_id, run_backfill
    from pipelines.report import format_summary
    from pipelines.session import build_session

    config = load_run_config(args)
    if (args.txn_app_id is None) != (args.txn_version is None):
        raise UsageError("--txn-app-id and --txn-version go together")
    if args.from_date and args.to_date and args.from_date > args.to_date:
        raise UsageError(f"--from {args.from_date} is after --to {args.to_date}")
    progress = ConsoleProgress()
    for stats in check_sources(args.source, config.s3):
        more = "+" if stats.truncated else ""
        progress(f"{stats.uri}: {stats.objects:,}{more} objects, {stats.bytes / 1e6:,.1f} MB")
    for table in (args.table, args.quarantine):
        if table and s3.is_s3(table):
            s3.check_bucket(table, config.s3)
    request = RunRequest(
        sources=args.source,
        table=args.table,
        quarantine_table=args.quarantine or default_quarantine_uri(args.table),
        window=DateWindow(args.from_date, args.to_date),
        dry_run=args.dry_run,
        report_path=args.report,
        run_id=args.run_id or new_run_id(),
        txn=(args.txn_app_id, args.txn_version) if args.txn_app_id is not None else None,
    )
    spark = build_session(config, show_progress=sys.stderr.isatty())
    try:
        report = run_backfill(spark, config, request, progress=progress)
    finally:
        spark.stop()
    print(format_summary(report))
    if report.status == "quarantine_threshold_exceeded":
        print(
            f"backfill: {report.counts.quarantined_ratio:.2%} of the records were quarantined, "
            f"above --max-quarantine-ratio {config.quarantine.max_ratio}; the state table "
            f"{request.table} was not changed",
            file=sys.stderr,
        )
        return EXIT_QUARANTINE
    return EXIT_OK


def _cmd_history(args: argparse.Namespace) -> int:
    from pipelines import versions

    with _session(args) as spark:
        commits = versions.history(spark, args.table)
    for commit in commits:
        if args.json:
            print(json.dumps(commit, sort_keys=True, default=json_default))
        else:
            print(format_commit(commit))
    return EXIT_OK


def _cmd_diff(args: argparse.Namespace) -> int:
    from pipelines import versions

    with _session(args) as spark:
        table_diff = versions.diff(spark, args.table, args.from_version, args.to_version)
        rows = table_diff.changes.orderBy("key").toLocalIterator()  # streamed, not collected
        for index, row in enumerate(rows):
            if args.json:
                print(json.dumps(row.asDict(recursive=True), sort_keys=True, default=json_default))
            elif index < args.limit:
                print(format_change(row.asDict(recursive=True)))
        summary = table_diff.summary()
    print(format_diff_summary(summary), file=sys.stderr if args.json else sys.stdout)
    return EXIT_OK


def _cmd_rollback(args: argparse.Namespace) -> int:
    from pipelines import versions

    with _session(args) as spark:
        undone, new_version = versions.rollback(spark, args.table, args.to_version, args.reason)
        summary = undone.summary()
    print(
        f"restored {args.table} to version {args.to_version} as version {new_version}; "
        f"this undid the changes of versions {args.to_version + 1} to {summary['to_version']}:"
    )
    print(format_diff_summary(summary))
    return EXIT_OK


@contextmanager
def _session(args: argparse.Namespace) -> Iterator[SparkSession]:
    from pipelines.session import build_session

    spark = build_session(load_run_config(args))
    try:
        yield spark
    finally:
        spark.stop()


def _cmd_generate(args: argparse.Namespace) -> int:
    import tempfile
    from pathlib import Path

    from pipelines.generate.events import generate_log
    from pipelines.io import s3

    faults = _fault_rates(args)
    to_s3 = s3.is_s3(args.out)
    s3_config = load_config(args.config).s3 if to_s3 else None
    with tempfile.TemporaryDirectory(prefix="backfill-generate-") as staging:
        local_out = Path(staging) if to_s3 else Path(args.out)
        log = generate_log(
            local_out,
            events=args.events,
            keys=args.keys,
            seed=args.seed,
            faults=faults,
            days=args.days,
            files_per_day=args.files_per_day,
            data_format=args.format,
            gzip_files=args.gzip,
        )
        if s3_config is not None:
            s3.upload_tree(local_out, args.out, s3_config)
    injected = ", ".join(f"{k} {v:,}" for k, v in sorted(log.injected.items()))
    print(f"wrote {log.lines_written:,} lines in {len(log.files)} files under {args.out}")
    print(f"faults: {injected}")
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from pipelines.demo import run_demo

    config = load_run_config(args)
    return run_demo(args, config, _fault_rates(args), ConsoleProgress())


def _fault_rates(args: argparse.Namespace):
    from pipelines.generate.events import FaultRates

    rates = {
        name: getattr(args, f"{name}_rate")
        for name in ("duplicate", "conflict", "late", "lost", "disorder", "garbage")
    }
    for name, rate in rates.items():
        if not 0.0 <= rate <= 1.0:
            raise UsageError(f"--{name}-rate must be between 0 and 1, got {rate}")
    return FaultRates(**rates)


class ConsoleProgress:
    """Prints what the pipeline is doing, with the time since start, on stderr."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def __call__(self, message: str) -> None:
        elapsed = int(time.monotonic() - self.started)
        print(f"[{elapsed // 60:02d}:{elapsed % 60:02d}] {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    verbose = "--verbose" in (argv if argv is not None else sys.argv[1:])
    try:
        args = build_parser().parse_args(argv)
        return int(args.handler(args))
    except BackfillError as exc:
        print(f"backfill: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("backfill: interrupted; tables stay at their last committed version", file=sys.stderr)
        return 130
    except Exception as exc:  # a failed run: one line, the table untouched
        if verbose:
            traceback.print_exc()
        print(f"backfill: run failed: {_one_line(exc)}", file=sys.stderr)
        return EXIT_FAILED


def _one_line(exc: BaseException) -> str:
    """The gist of an exception; for a Python worker's traceback, its final error line."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if any(line.startswith("Traceback") for line in lines):
        errors = [line for line in lines if re.match(r"^[A-Za-z_.]+(Error|Exception): ", line)]
        lines = errors[-1:] or lines
    text = " ".join(" ".join(lines).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


if __name__ == "__main__":
    sys.exit(main())
