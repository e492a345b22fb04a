"""The run report: the accounting of sections 2 and 3, key changes, versions; JSON and text."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any


@dataclass
class Counts:
    records_read: int = 0
    valid_unique: int = 0
    duplicates_dropped: int = 0
    quarantined: int = 0
    quarantined_by_reason: dict[str, int] = field(default_factory=dict)

    @property
    def balances(self) -> bool:
        """The contract's invariant: records_read == valid_unique + duplicates + quarantined."""
        parts = self.valid_unique + self.duplicates_dropped + self.quarantined
        return self.records_read == parts and sum(self.quarantined_by_reason.values()) == (
            self.quarantined
        )

    @property
    def quarantined_ratio(self) -> float:
        return self.quarantined / self.records_read if self.records_read else 0.0


@dataclass
class KeyChanges:
    total: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    # How the touched keys were folded (contract section 7): resumed from their stored row
    # with the new events only, or re-folded from their whole history in the events table.
    resumed: int = 0
    refolded: int = 0
    new_events_folded: int = 0
    history_events_read: int = 0
    measure: str | None = None  # the state column the changes below are measured on
    total_abs_change: Decimal = Decimal(0)
    top_changes: list[dict[str, Any]] = field(default_factory=list)
    # Why keys change: {cause: {"keys": n, "abs_change": Decimal}} (see transforms.reconcile)
    by_cause: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class RedriveCounts:
    """A redrive's accounting (contract section 11): every redriven record was admitted,
    dropped as a duplicate of an accepted event, or is still quarantined (by outcome)."""

    filter: dict[str, Any] = field(default_factory=dict)  # reasons, run_id
    redriven: int = 0
    admitted: int = 0
    duplicates_dropped: int = 0
    still_quarantined: int = 0
    by_outcome: dict[str, int] = field(default_factory=dict)
    # quarantine rows whose outcome this redrive recorded (a rerun records none)
    quarantine_rows_marked: int = 0

    @property
    def balances(self) -> bool:
        parts = self.admitted + self.duplicates_dropped + self.still_quarantined
        return self.redriven == parts == sum(self.by_outcome.values())


@dataclass
class RunReport:
    run_id: str
    # committed | unchanged (nothing to change: no commit) | already_applied (the txn version
    # was committed before) | dry_run | quarantine_threshold_exceeded | failed
    status: str
    fold: str
    sources: list[str]
    window: dict[str, str | None]
    table: str
    quarantine_table: str
    counts: Counts
    keys: KeyChanges
    events_table: str = ""
    # incremental: fold the keys the events table's changes touched; full: fold every key
    mode: str = "incremental"
    table_version_before: int | None = None
    table_version_after: int | None = None
    quarantine_version_after: int | None = None
    quarantine_rows_added: int = 0
    events_version_before: int | None = None
    events_version_after: int | None = None
    events_inserted: int = 0
    # stored copies a newer, different copy of this run replaced (their raw text quarantined)
    events_replaced: int = 0
    # the events-table version the state reflected before this run, and after it
    folded_events_version_before: int | None = None
    folded_events_version_after: int | None = None
    # the fingerprint the state version after this run carries (contract section 10), as
    # its commit records it; None where the run committed nothing to the state
    fingerprint_after: dict[str, Any] | None = None
    # a redrive's accounting; None for a run over sources
    redrive: RedriveCounts | None = None
    started_at: str = ""
    duration_seconds: float = 0.0
    code_version: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The report; a redrive's also holds its four counts at the top level, where the
        contract's `redriven == admitted + duplicates_dropped + still_quarantined` reads them."""
        fields = asdict(self)
        if self.redrive is not None:
            for name in ("redriven", "admitted", "duplicates_dropped", "still_quarantined"):
                fields[name] = getattr(self.redrive, name)
        return fields

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, default=json_default)


def json_default(value: Any) -> Any:
    """JSON for what Spark rows hold: exact decimals as strings, timestamps as ISO-8601 UTC."""
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.astimezone(UTC)  # Spark gives local naive
        return aware.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return str(value)


def format_summary(report: RunReport) -> str:
    """A short human summary of a run, as `backfill run` and `backfill demo` print it."""
    c, k = report.counts, report.keys
    lines = [
        f"run {report.run_id}: {report.status.replace('_', ' ')}",
        f"  read            {c.records_read:>12,} records from {len(report.sources)} source(s)",
        f"  valid, unique   {c.valid_unique:>12,}",
        f"  duplicates      {c.duplicates_dropped:>12,} dropped (identical copies)",
        f"  quarantined     {c.quarantined:>12,} ({c.quarantined_ratio:.2%})",
    ]
    for reason, n in sorted(c.quarantined_by_reason.items(), key=lambda kv: (-kv[1], kv[0])):
        lines.append(f"      {reason:<28} {n:>8,}")
    corrected = "to update" if report.status == "dry_run" else "updated"
    measure = f"|change of {report.keys.measure}|" if report.keys.measure else "|change|"
    lines += [
        f"  events stored   {report.events_inserted:>12,} new, {report.events_replaced:,} "
        "replaced by a newer copy",
        f"  keys            {k.total:>12,} folded ({report.mode}): {k.resumed:,} resumed with "
        f"{k.new_events_folded:,} new events, {k.refolded:,} re-folded from "
        f"{k.history_events_read:,} events of history",
        f"                  {'':>12} {k.inserted:,} new, {k.updated:,} {corrected}, "
        f"{k.deleted:,} deleted, {k.unchanged:,} already right",
    ]
    if k.measure:
        lines.append(f"  total {measure:<16} {_fmt_decimal(k.total_abs_change):>6}")
    for cause, figures in sorted(k.by_cause.items(), key=lambda kv: -kv[1]["keys"]):
        change = f"  |change| {_fmt_decimal(figures['abs_change'])}" if k.measure else ""
        lines.append(f"      {cause:<28} {figures['keys']:>8,} keys{change}")
    if k.top_changes:
        lines.append("  largest corrections:")
    for row in k.top_changes:
        lines.append(
            f"      {row['key']:<20} {_fmt_decimal(row['before']):>16} -> "
            f"{_fmt_decimal(row['after']):>16}  ({_fmt_signed(row['delta'])})"
        )
    lines.append(
        f"  state table     {report.table}  version {_fmt_version(report.table_version_before)}"
        f" -> {_fmt_version(report.table_version_after)}"
    )
    lines.append(
        f"  events          {report.events_table}  version "
        f"{_fmt_version(report.events_version_before)} -> "
        f"{_fmt_version(report.events_version_after)}"
    )
    lines.append(
        f"  quarantine      {report.quarantine_table}  version "
        f"{_fmt_version(report.quarantine_version_after)} "
        f"({report.quarantine_rows_added:,} records added)"
    )
    if report.redrive is not None:
        lines += _redrive_lines(report.redrive)
    lines.append(f"  took            {report.duration_seconds:>11.1f}s")
    return "\n".join(lines)


def _redrive_lines(r: RedriveCounts) -> list[str]:
    lines = [
        f"  redriven        {r.redriven:>12,} quarantined records: {r.admitted:,} admitted, "
        f"{r.duplicates_dropped:,} duplicates, {r.still_quarantined:,} still quarantined",
    ]
    for outcome, n in sorted(r.by_outcome.items(), key=lambda kv: (-kv[1], kv[0])):
        if outcome not in ("admitted", "duplicate"):
            lines.append(f"      {outcome:<28} {n:>8,}")
    lines.append(f"                  {'':>12} {r.quarantine_rows_marked:,} quarantine rows marked")
    return lines


def _fmt_version(version: int | None) -> str:
    return "none" if version is None else str(version)


def _fmt_decimal(value: Any) -> str:
    if value is None:
        return "(new)"
    return f"{Decimal(value).normalize():,f}"


def _fmt_signed(value: Any) -> str:
    text = _fmt_decimal(value)
    return text if text.startswith("-") else "+" + text


def format_commit(commit: dict[str, Any]) -> str:
    """One line per table version for `backfill history`."""
    metadata = commit["userMetadata"]
    who = ""
    if isinstance(metadata, dict):
        who = " ".join(
            f"{name}={metadata[name]}"
            for name in ("writer", "run_id", "user", "reason")
            if metadata.get(name)
        )
    elif metadata:
        who = str(metadata)
    metrics = commit["operationMetrics"]
    counts = ", ".join(
        f"{label} {metrics[name]}"
        for name, label in (
            ("numTargetRowsInserted", "inserted"),
            ("numTargetRowsUpdated", "updated"),
            ("numTargetRowsDeleted", "deleted"),
            ("numOutputRows", "rows written"),
            ("numRestoredFiles", "files restored"),
        )
        if name in metrics
    )
    carried = commit.get("fingerprint")
    stamp = f"fp {carried['xxhash64_sum'][:8]}" if carried else "no fp"
    return (
        f"{commit['version']:>5}  {commit['timestamp'][:19]}  {commit['operation']:<14} "
        f"{counts:<40} {stamp:<11} {who}"
    ).rstrip()


def format_change(change: dict[str, Any]) -> str:
    """One line per changed key for `backfill diff`."""
    before, after = change["before"], change["after"]
    detail = ", ".join(
        f"{name} {_fmt_value(before.get(name) if before else None)} -> "
        f"{_fmt_value(after.get(name) if after else None)}"
        for name in (after or before or {})
        if not before or not after or before.get(name) != after.get(name)
    )
    return f"{change['change']:<7} {change['key']:<24} {detail}"


def format_diff_summary(summary: dict[str, Any]) -> str:
    line = (
        f"versions {summary['from_version']} -> {summary['to_version']} "
        f"(by {summary['method'].replace('_', ' ')}): {summary['keys_changed']:,} keys changed: "
        f"{summary['keys_inserted']:,} inserted, {summary['keys_updated']:,} updated, "
        f"{summary['keys_deleted']:,} deleted"
    )
    if summary.get("measure"):
        line += (
            f"; total |change of {summary['measure']}| {_fmt_decimal(summary['total_abs_change'])}"
        )
    return line


def _fmt_value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, Decimal):
        return _fmt_decimal(value)
    return str(value)
