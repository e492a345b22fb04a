"""What `make bench` measures: the sizes, the nightly run, JSON vs Parquet and the small runs.

Each scenario prepares its generated log and work folder and runs its contenders through
`benchmarks.runner`; it returns the figures `benchmarks.render` turns into tables.
"""

from __future__ import annotations

import json
import os
import re
import sys
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from benchmarks.runner import prepare, run_cli, run_contender
from pipelines import class_archive
from pipelines.generate.log import GENERATORS

ORDER = (
    "spark_floor",
    "backfill_empty",
    "backfill_one_core",
    "backfill_one_percent",
    "python_replay",
    "duckdb",
)
LARGE_ORDER = ("spark_floor", "backfill_empty")  # the large size: does it finish, how it grows
SMALL_NIGHT = date(2026, 1, 5)  # the last generated day of the small-run log


def bench_size(events: int, out: Path, order: tuple[str, ...] = ORDER) -> dict[str, Any]:
    data, work = out / f"events-{events}", out / f"work-{events}"
    prepare(
        data, work, events=events, keys=max(1000, events // 200), seed=42, days=5, files_per_day=8
    )
    lines = json.loads((data / "_generator.json").read_text())["lines_written"]
    results: dict[str, Any] = {"events": events, "lines": lines, "contenders": {}}
    for name in order:
        print(f"  {events:>12,} events: {name} ...", file=sys.stderr, flush=True)
        results["contenders"][name] = run_contender(name, data, work)
    floor = results["contenders"]["spark_floor"]["seconds"]
    for result in results["contenders"].values():
        if "failed" in result:
            continue
        result["seconds"] = round(result["seconds"], 2)
        result["lines_per_second"] = round(lines / result["seconds"]) if result["seconds"] else None
        result["ratio_to_floor"] = round(result["seconds"] / floor, 2)
    return results


def bench_nightly(events: int, out: Path) -> dict[str, Any]:
    """History of `events` over 30 nights, then one night of 1% new events (10% late)."""
    data, work = out / f"history-{events}", out / f"nightly-{events}"
    prepare(
        data, work, events=events, keys=max(1000, events // 200), seed=42, days=30, files_per_day=2
    )
    print(f"  nightly: {events:,} events of history, then one night ...", file=sys.stderr)
    return {"events": events, **run_contender("nightly", data, work)}


def bench_formats(events: int, out: Path) -> dict[str, Any]:
    """The same events as JSON Lines and as typed Parquet, each backfilled into an empty
    table in one run: what reading typed columns instead of parsing text saves."""
    results: dict[str, Any] = {"events": events}
    for data_format in ("json", "parquet"):
        data, work = out / f"formats-{data_format}-{events}", out / f"formats-work-{data_format}"
        keys = max(1000, events // 100)
        prepare(
            data,
            work,
            events=events,
            keys=keys,
            seed=42,
            days=5,
            files_per_day=8,
            data_format=data_format,
        )
        print(f"  formats: {events:,} events as {data_format} ...", file=sys.stderr, flush=True)
        results[data_format] = run_contender("backfill_empty", data, work)
    json_run, parquet_run = results["json"], results["parquet"]
    if "failed" not in json_run and "failed" not in parquet_run:
        results["parquet_to_json"] = round(parquet_run["seconds"] / json_run["seconds"], 2)
    return results


def bench_small_runs(out: Path) -> dict[str, Any]:
    """Whole processes, as a scheduler or an analyst starts them: a night of about 200,000
    events onto tables holding the four days before it, then a night of three records, the
    session floor beside them (a process that starts the same session, reads one Delta table
    and appends a row), `backfill history` and `backfill diff` of the big night, and
    `backfill demo` (its two backfill steps)."""
    data, work = out / "small-events", out / "small-runs"
    prepare(data, work, events=1_000_000, keys=5_000, seed=7, days=5, files_per_day=4)
    table = work / "state"
    history = ["--source", str(data), "--to", str(SMALL_NIGHT - timedelta(days=1)), "--full"]
    night = ["--source", str(data), "--from", str(SMALL_NIGHT)]
    print("  small runs: history, then the night as a whole process ...", file=sys.stderr)
    run_cli(["run", *history, "--table", str(table)], cwd=work)
    seconds, output = run_cli(["run", *night, "--table", str(table)], cwd=work)
    print("  small runs: a night of three records, the session floor ...", file=sys.stderr)
    tiny = _tiny_night(work / "tiny-night.jsonl")
    tiny_seconds, _ = run_cli(["run", "--source", str(tiny), "--table", str(table)], cwd=work)
    floor_seconds = run_contender("session_floor", table, work / "floor-table").get(
        "process_seconds"
    )
    print("  small runs: the same two without the JVM's class archive ...", file=sys.stderr)
    os.environ[class_archive.SWITCH_ENV] = "off"
    try:
        tiny = _tiny_night(work / "tiny-night-2.jsonl", first=3)
        bare_tiny_seconds, _ = run_cli(
            ["run", "--source", str(tiny), "--table", str(table)], cwd=work
        )
        bare_floor = run_contender("session_floor", table, work / "floor-table")
    finally:
        del os.environ[class_archive.SWITCH_ENV]
    print("  small runs: history and diff of the night ...", file=sys.stderr, flush=True)
    reading = bench_history_and_diff(table, night_versions(output), cwd=work)
    print("  small runs: verify and verify --deep of the state ...", file=sys.stderr, flush=True)
    verifying = bench_verify(table, cwd=work)
    print("  small runs: backfill demo ...", file=sys.stderr, flush=True)
    demo_seconds, demo_output = run_cli(["demo"], cwd=work)
    took = [float(m) for m in re.findall(r"took\s+([0-9.]+)s", demo_output)]
    records = re.search(r"read\s+([0-9,]+) records", output)
    return {
        "night_seconds": round(seconds, 1),
        "night_records": int(records.group(1).replace(",", "")) if records else None,
        "tiny_night_seconds": round(tiny_seconds, 1),
        "session_floor_seconds": floor_seconds,
        "tiny_night_to_floor": round(tiny_seconds / floor_seconds, 2) if floor_seconds else None,
        "tiny_night_without_archive_seconds": round(bare_tiny_seconds, 1),
        "session_floor_without_archive_seconds": bare_floor.get("process_seconds"),
        **reading,
        **verifying,
        "demo_seconds": round(demo_seconds, 1),
        "demo_steps_seconds": took,
    }


def bench_trust(events: int, out: Path) -> dict[str, Any]:
    """A full backfill of `events` (the sizes part's log), then `backfill verify` and
    `verify --deep` of its state as whole processes, and what a night pays for its
    fingerprint against counting every row (contract section 10)."""
    data, work = out / f"events-{events}", out / f"trust-{events}"
    prepare(
        data, work, events=events, keys=max(1000, events // 200), seed=42, days=5, files_per_day=8
    )
    print(f"  trust: a full backfill of {events:,} events ...", file=sys.stderr, flush=True)
    backfill = run_contender("backfill_empty", data, work)
    if "failed" in backfill:
        return {"events": events, "failed": backfill["failed"]}
    print("  trust: verify and verify --deep ...", file=sys.stderr, flush=True)
    verifying = bench_verify(work / "state", cwd=work)
    print("  trust: a night's fingerprint against every row's ...", file=sys.stderr, flush=True)
    cost = run_contender("fingerprint_cost", data, work)
    return {
        "events": events,
        "backfill_seconds": round(backfill["seconds"], 1),
        **verifying,
        **{k: v for k, v in cost.items() if k not in ("peak_rss_mb", "process_seconds")},
    }


def _tiny_night(path: Path, first: int = 0) -> Path:
    """Three new events for keys the small-run log holds, far ahead in their streams (ids
    and seqs from `first`, so a second tiny night is new events too)."""
    lines = [
        json.dumps(
            {
                "event_id": f"tiny-night-{i}",
                "key": GENERATORS["balance"].key_name(i),
                "seq": 1_000_000 + i,
                "event_time": f"{SMALL_NIGHT + timedelta(days=1)}T00:0{i}:00Z",
                "op": "add",
                "amount": "1.50",
            }
        )
        for i in range(first, first + 3)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def night_versions(run_output: str) -> tuple[int, int]:
    """The state table's versions before and after a run, from what `backfill run` prints."""
    found = re.search(r"state table\s+\S+\s+version (\d+) -> (\d+)", run_output)
    if found is None:
        raise SystemExit(f"no state table versions in the run's output: {run_output[-2000:]}")
    return int(found.group(1)), int(found.group(2))


def bench_verify(table: Path, cwd: Path) -> dict[str, Any]:
    """`backfill verify` of the latest state version (its rows against the fingerprint its
    commit records) and `verify --deep` (every key re-folded from the events table), each a
    whole process; both must pass."""
    seconds, output = run_cli(["verify", "--table", str(table)], cwd=cwd)
    deep_seconds, deep_output = run_cli(["verify", "--table", str(table), "--deep"], cwd=cwd)
    rows = re.search(r"verifies: ([0-9,]+) rows", output)
    if rows is None or "every key equals the fold" not in deep_output:
        raise SystemExit(f"verify did not pass: {output[-500:]} {deep_output[-500:]}")
    return {
        "verify_seconds": round(seconds, 2),
        "verify_deep_seconds": round(deep_seconds, 2),
        "verify_rows": int(rows.group(1).replace(",", "")),
    }


def bench_history_and_diff(table: Path, night: tuple[int, int], cwd: Path) -> dict[str, Any]:
    """`backfill history` of `table`, and `backfill diff` of the `night` (the versions before
    and after it), each a whole process: what an analyst waits for."""
    history_seconds, history_output = run_cli(["history", "--table", str(table)], cwd=cwd)
    before, after = night
    diff = ["diff", "--table", str(table), "--from-version", str(before)]
    diff_seconds, diff_output = run_cli([*diff, "--to-version", str(after)], cwd=cwd)
    summary = re.search(r"\(by ([a-z ]+)\): ([0-9,]+) keys changed", diff_output)
    return {
        "history_seconds": round(history_seconds, 2),
        "history_versions": len(history_output.splitlines()),
        "diff_seconds": round(diff_seconds, 2),
        "diff_keys": int(summary.group(2).replace(",", "")) if summary else None,
        "diff_method": summary.group(1) if summary else None,
    }
