"""A run as a process: check where it writes, start Spark, run the stages, print the summary;
a failure ends as one line, its full trace in the run's log file. `backfill run` and
`backfill redrive` build the request; this runs it."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from pipelines.config import Config
from pipelines.errors import BackfillError, ExitCode, RunFailed

if TYPE_CHECKING:  # the run's modules load Spark's Python side: only once a run starts
    from pipelines.report import RunReport
    from pipelines.run import RunRequest


def launch(
    config: Config,
    request: RunRequest,
    progress: ConsoleProgress,
    checks: Callable[[], None] | None = None,
) -> int:
    """Run `checks` (of the sources, say), check where the run writes, start Spark, run,
    print the summary; the exit code. The operators' systems hear of the run at its start
    and its end, however it ends: a usage error the checks find is a run that ended 2."""
    from pipelines.observe.observer import Observer

    observer = Observer(
        config,
        request.run_id,
        request.table,
        inputs=list(request.sources),
        outputs=[request.table, request.events_table, request.quarantine_table],
        redrive=request.redrive is not None,
    )
    observer.started()
    reports: list[RunReport] = []
    code, error = int(ExitCode.FAILED), None
    try:
        if checks is not None:
            checks()
        code = _launch(config, request, progress, reports.append)
        return code
    except BackfillError as exc:
        code, error = int(exc.exit_code), str(exc)
        raise
    except KeyboardInterrupt:
        code, error = int(ExitCode.INTERRUPTED), "interrupted"
        raise
    except Exception as exc:
        error = str(exc)
        raise
    finally:
        observer.finished(reports[-1] if reports else None, code, error)


def _launch(
    config: Config,
    request: RunRequest,
    progress: ConsoleProgress,
    on_report: Callable[[RunReport], None],
) -> int:
    from pipelines.io import s3
    from pipelines.io.locations import check_report_path, check_table_location
    from pipelines.io.sources import is_large_run
    from pipelines.report import format_summary
    from pipelines.run import run_backfill
    from pipelines.session import build_session

    tables = (request.table, request.quarantine_table, request.events_table)
    for location in (*tables, request.report_path):
        if location and s3.is_s3(location):
            s3.check_bucket(location, config.s3)
    for uri, what in (
        (request.table, "state table"),
        (request.events_table, "events table"),
        (request.quarantine_table, "quarantine table"),
    ):
        check_table_location(uri, what)
    if request.report_path:
        check_report_path(request.report_path)
    log_file = run_log_file(request.report_path, request.run_id, config)
    progress(f"run {request.run_id}; Spark's log: {log_file}")
    progress.doing = "starting Spark"
    try:
        large = is_large_run(request.sources, request.window, config.spark)
        spark = build_session(
            config, show_progress=sys.stderr.isatty(), log_file=log_file, large_run=large
        )
        progress.doing = "checking the tables"
        try:
            report = run_backfill(spark, config, request, progress=progress, on_report=on_report)
        finally:
            spark.stop()
    except BackfillError:
        raise
    except Exception as exc:
        from pipelines.failures import describe_failure, save_trace

        saved = save_trace(exc, log_file)
        where = f"; full trace in {saved}" if saved else ""
        message = describe_failure(exc, progress.doing, config.s3)
        raise RunFailed(f"run failed: {message}{where}") from exc
    print(format_summary(report))
    if report.status == "quarantine_threshold_exceeded":
        print(
            f"backfill: {report.counts.quarantined_ratio:.2%} of the records were quarantined, "
            f"above --max-quarantine-ratio {config.quarantine.max_ratio}; the state table "
            f"{request.table} was not changed",
            file=sys.stderr,
        )
        return ExitCode.QUARANTINE
    return ExitCode.OK


def run_log_file(report_path: str | None, run_id: str, config: Config) -> Path:
    """Where a run's JVM log and, if it fails, its full trace go: beside a local report, or
    in the cache folder beside the JARs."""
    from pipelines.io.locations import local_path

    report = local_path(report_path) if report_path else None
    if report is not None:
        return report.absolute().with_suffix(".log")
    return Path(config.spark.jars_dir).expanduser().parent / "logs" / f"{run_id}.log"


class ConsoleProgress:
    """Prints what the pipeline is doing, with the time since start, on stderr; `doing` is
    the step a failure is reported in."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.doing: str | None = None

    def __call__(self, message: str) -> None:
        if not message.startswith(("run ", "read ", "folded ", "no new events")):
            self.doing = message
        elapsed = int(time.monotonic() - self.started)
        print(f"[{elapsed // 60:02d}:{elapsed % 60:02d}] {message}", file=sys.stderr, flush=True)
