"""The flags several `backfill` subcommands share: a run's three tables, the session and
config, where the operators' metrics and lineage go, the generator's faults, and dates."""

from __future__ import annotations

import argparse
from datetime import date


def add_table_flags(parser: argparse.ArgumentParser) -> None:
    """A run's three tables (`cli.TABLE_FLAGS`): the state, and the other two beside it."""
    parser.add_argument("--table", required=True, metavar="URI", help="state Delta table")
    parser.add_argument(
        "--quarantine", metavar="URI", help="quarantine Delta table (default: <table>_quarantine)"
    )
    parser.add_argument(
        "--events-table",
        metavar="URI",
        help="events Delta table: every accepted event (default: <table>_events)",
    )


def add_observe_flags(parser: argparse.ArgumentParser) -> None:
    """Where the run's metrics and lineage go (contract section 12; config `metrics:`,
    `lineage:`)."""
    parser.add_argument(
        "--metrics-push",
        metavar="URL",
        help="push the run's metrics to this Prometheus Pushgateway (job backfill, label table)",
    )
    parser.add_argument(
        "--metrics-file",
        metavar="PATH",
        help="write the run's metrics here for node_exporter's textfile collector",
    )
    parser.add_argument(
        "--lineage",
        metavar="URL|file:PATH",
        help="emit OpenLineage START and COMPLETE/FAIL events to this endpoint or file",
    )


def add_session_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="YAML config (default: conf/local.yaml)")
    parser.add_argument("--master", help="Spark master, e.g. local[2] (default from config)")


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    add_session_flags(parser)
    parser.add_argument(
        "--fold",
        metavar="NAME|module:Class",
        help="fold to apply: a built-in (balance, snapshot), an installed plugin's name, or a "
        "class by import path; options from the config's fold_options (default from config: "
        "balance)",
    )
    parser.add_argument("--shuffle-partitions", type=int, metavar="N")


def add_generator_flags(parser: argparse.ArgumentParser) -> None:
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


def parse_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date YYYY-MM-DD") from None
