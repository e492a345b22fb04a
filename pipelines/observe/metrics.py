"""A run's Prometheus metrics (contract section 12), with `prometheus-client`: pushed to a
Pushgateway under job `backfill` and the `table` label, and/or written in the text format
for node_exporter's textfile collector.

The gateway gets a POST (`pushadd`), which replaces only the series pushed, so a failed run,
which pushes no `backfill_last_success_timestamp_seconds`, leaves the last success in place.
The file is rewritten whole (atomically, by `write_to_textfile`), so a failed run copies the
last success from the file it replaces.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, pushadd_to_gateway, write_to_textfile
from prometheus_client.parser import text_string_to_metric_families

from pipelines.report import RunReport

JOB = "backfill"
LAST_SUCCESS = "backfill_last_success_timestamp_seconds"


@dataclass(frozen=True)
class RunOutcome:
    """What the metrics say of one run: its exit code, when it ended, how long it took, and
    its report (None when it failed before it had one)."""

    table: str
    exit_code: int
    finished_at: float  # Unix time
    duration_seconds: float
    report: RunReport | None


def registry_of(outcome: RunOutcome, labels: dict[str, str] | None = None) -> CollectorRegistry:
    """The run's series; `labels` (the file's `table`) go on every one of them."""
    registry = CollectorRegistry()
    names = sorted(labels or {})
    values = [(labels or {})[n] for n in names]

    def gauge(name: str, help_text: str, *more: str) -> Gauge:
        return Gauge(name, help_text, [*names, *more], registry=registry)

    def put(metric: Gauge, value: float, *more: str) -> None:
        (metric.labels(*values, *more) if names or more else metric).set(value)

    put(
        gauge("backfill_run_duration_seconds", "Wall time of the last run"),
        outcome.duration_seconds,
    )
    put(
        gauge(
            "backfill_last_run_status",
            "Exit code of the last run (0 success, 1 failed, "
            "2 usage error, 3 over the quarantine threshold)",
        ),
        outcome.exit_code,
    )
    put(
        gauge("backfill_last_run_timestamp_seconds", "When the last run ended"), outcome.finished_at
    )
    report = outcome.report
    if report is not None:
        records = gauge("backfill_records", "Records of the last run, by outcome", "outcome")
        counts = report.counts
        for name, value in (
            ("read", counts.records_read),
            ("valid_unique", counts.valid_unique),
            ("duplicates_dropped", counts.duplicates_dropped),
            ("quarantined", counts.quarantined),
        ):
            put(records, value, name)
        keys = gauge("backfill_keys", "State keys of the last run, by change", "change")
        for name, value in (
            ("inserted", report.keys.inserted),
            ("updated", report.keys.updated),
            ("deleted", report.keys.deleted),
            ("unchanged", report.keys.unchanged),
        ):
            put(keys, value, name)
    if outcome.exit_code == 0:
        put(gauge(LAST_SUCCESS, "When the last successful run ended"), outcome.finished_at)
    return registry


def push(gateway: str, outcome: RunOutcome, timeout: float) -> None:
    """POST the run's series to the gateway, grouped by job `backfill` and the table."""
    pushadd_to_gateway(
        gateway,
        job=JOB,
        registry=registry_of(outcome),
        grouping_key={"table": outcome.table},
        timeout=timeout,
    )


def write_file(path: str, outcome: RunOutcome) -> None:
    """The run's series, labelled with its table, as the file at `path` (replaced atomically);
    a failed run keeps the last success the file held for this table."""
    registry = registry_of(outcome, {"table": outcome.table})
    if outcome.exit_code != 0:
        previous = last_success(Path(path), outcome.table)
        if previous is not None:
            Gauge(
                LAST_SUCCESS, "When the last successful run ended", ["table"], registry=registry
            ).labels(outcome.table).set(previous)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(path, registry)


def last_success(path: Path, table: str) -> float | None:
    """The last success the textfile at `path` records for `table`, if any."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == LAST_SUCCESS and sample.labels.get("table") == table:
                return float(sample.value)
    return None
