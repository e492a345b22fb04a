"""The `backfill` command line: `main(argv) -> int`, the same entry point under spark-submit."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from typing import NoReturn

from pipelines import commands, flags
from pipelines.errors import BackfillError, ExitCode, UsageError
from pipelines.generate.log import GENERATORS
from pipelines.io.locations import local_path


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
    subcommands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = subcommands.add_parser("run", help="backfill the state table from raw events")
    run.add_argument(
        "--source",
        action="append",
        required=True,
        metavar="URI",
        help="file, directory or glob of JSON Lines or Parquet (repeatable)",
    )
    flags.add_table_flags(run)
    run.add_argument(
        "--full",
        action="store_true",
        help="re-fold every key from the events table, not only the keys this run touched "
        "(needed once for a state table written before the events table existed)",
    )
    flags.add_config_flags(run)
    run.add_argument(
        "--from",
        dest="from_date",
        type=flags.parse_date,
        metavar="DATE",
        help="first dt= partition to read (YYYY-MM-DD)",
    )
    run.add_argument(
        "--to",
        dest="to_date",
        type=flags.parse_date,
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
    flags.add_observe_flags(run)
    run.set_defaults(handler=commands.cmd_run)

    generate = subcommands.add_parser("generate", help="write a realistic event log with faults")
    generate.add_argument(
        "--out", required=True, metavar="DIR", help="a local directory or an s3:// / s3a:// prefix"
    )
    generate.add_argument("--config", metavar="FILE", help="YAML config, for its s3 settings")
    generate.add_argument("--events", type=int, required=True, metavar="N")
    generate.add_argument("--keys", type=int, required=True, metavar="K")
    generate.add_argument(
        "--fold",
        choices=tuple(GENERATORS),
        default="balance",
        help="whose events to write: balance (add, subtract, set with an amount) or snapshot "
        "(upsert and patch with a data object, delete), each with the faults below "
        "(default %(default)s)",
    )
    flags.add_generator_flags(generate)
    generate.set_defaults(handler=commands.cmd_generate)

    history = subcommands.add_parser("history", help="each version of a table: who, why, what")
    history.add_argument("--table", required=True, metavar="URI")
    history.add_argument("--json", action="store_true", help="one JSON object per version")
    flags.add_session_flags(history)
    history.set_defaults(handler=commands.cmd_history)

    diff = subcommands.add_parser("diff", help="per-key changes between two versions")
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
    flags.add_session_flags(diff)
    diff.set_defaults(handler=commands.cmd_diff)

    rollback = subcommands.add_parser("rollback", help="restore a table to an earlier version")
    rollback.add_argument("--table", required=True, metavar="URI")
    rollback.add_argument("--to-version", type=int, required=True, metavar="N")
    rollback.add_argument("--reason", help="recorded in the table's history")
    flags.add_session_flags(rollback)
    rollback.set_defaults(handler=commands.cmd_rollback)

    maintain = subcommands.add_parser(
        "maintain",
        help="compact the three tables, remove files outside the retention window, checkpoint",
    )
    flags.add_table_flags(maintain)
    maintain.add_argument(
        "--retain-days",
        type=int,
        metavar="N",
        help="days of versions kept readable, at least 7 (default from config: tables.retain_days)",
    )
    maintain.add_argument(
        "--dry-run", action="store_true", help="print what it would do, change nothing"
    )
    maintain.add_argument("--json", action="store_true", help="one JSON object per table")
    flags.add_session_flags(maintain)
    maintain.set_defaults(handler=commands.cmd_maintain)

    verify = subcommands.add_parser(
        "verify",
        help="prove a state version is what the pipeline wrote (--deep: the fold of its events)",
    )
    verify.add_argument("--table", required=True, metavar="URI", help="state Delta table")
    verify.add_argument("--version", type=int, metavar="N", help="default: the latest")
    verify.add_argument(
        "--deep",
        action="store_true",
        help="also re-fold every key from the events table and compare row by row",
    )
    verify.add_argument("--json", action="store_true", help="one JSON object per differing key")
    verify.add_argument(
        "--events-table",
        metavar="URI",
        help="events Delta table --deep folds from (default: <table>_events)",
    )
    verify.add_argument(
        "--fold",
        metavar="NAME|module:Class",
        help="the table's fold, where the one it records cannot be loaded by name",
    )
    flags.add_session_flags(verify)
    verify.set_defaults(handler=commands.cmd_verify)

    redrive = subcommands.add_parser(
        "redrive", help="re-read quarantined records through the given config and fold"
    )
    flags.add_table_flags(redrive)
    redrive.add_argument(
        "--reason",
        action="extend",
        nargs="+",
        metavar="PREFIX",
        help="only records whose current reason starts with one of these (default: all)",
    )
    redrive.add_argument(
        "--run-id",
        dest="quarantined_by",
        metavar="ID",
        help="only records the run with this id quarantined",
    )
    flags.add_config_flags(redrive)
    redrive.add_argument(
        "--dry-run", action="store_true", help="compute and report everything, commit nothing"
    )
    redrive.add_argument("--report", metavar="FILE", help="write the run report as JSON here")
    flags.add_observe_flags(redrive)
    redrive.set_defaults(handler=commands.cmd_redrive)

    demo = subcommands.add_parser("demo", help="generate a log, a faulty state, and backfill it")
    demo.add_argument(
        "--workdir",
        default="backfill-demo",
        metavar="DIR",
        help="where the demo writes its events and tables (default: %(default)s)",
    )
    demo.add_argument("--events", type=int, default=200_000, metavar="N")
    demo.add_argument("--keys", type=int, default=5_000, metavar="K")
    flags.add_config_flags(demo)
    flags.add_generator_flags(demo)
    demo.set_defaults(handler=commands.cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    verbose = "--verbose" in (argv if argv is not None else sys.argv[1:])
    try:
        args = build_parser().parse_args(argv)
        for name in TABLE_FLAGS:
            if getattr(args, name, None):
                setattr(args, name, absolute_uri(getattr(args, name)))
        return int(args.handler(args))
    except BackfillError as exc:
        print(f"backfill: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    except BrokenPipeError:  # `backfill history | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ExitCode.OK
    except KeyboardInterrupt:
        print("backfill: interrupted; tables stay at their last committed version", file=sys.stderr)
        return ExitCode.INTERRUPTED
    except Exception as exc:  # a failed command: one line, the table untouched
        from pipelines.failures import describe_failure

        if verbose:
            traceback.print_exc()
        print(f"backfill: run failed: {describe_failure(exc, None, None)}", file=sys.stderr)
        return ExitCode.FAILED


# Table locations, resolved once where the flags are read: Delta takes a relative path with a
# `-` in it for a table name, and refuses to create a table at a `file://` URI ("two different
# locations"), so a local path or `file:` URI becomes an absolute path.
TABLE_FLAGS = ("table", "quarantine", "events_table")


def absolute_uri(uri: str) -> str:
    """A local path or `file:` URI as an absolute path; URIs such as `s3a://` as they are."""
    path = local_path(uri)
    return os.path.abspath(path) if path is not None else uri


if __name__ == "__main__":
    sys.exit(main())
