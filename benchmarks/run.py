"""`make bench`: the same faulty event log at each size, five contenders timed in one run.

Writes benchmarks/results.json and benchmarks/results.md (the table the README quotes).
Each contender runs in its own process; its peak memory is the largest resident set of its
whole process tree (Spark's JVM and Python workers included), sampled every 100 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import threading
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import psutil

from benchmarks.contenders import HOT_KEY_EVENTS
from pipelines.generate.log import generate_log

HERE = Path(__file__).resolve().parent
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


def run_contender(name: str, data: Path, work: Path) -> dict[str, Any]:
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.contenders", name, str(data), str(work)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=HERE.parent,
    )
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        parent = psutil.Process(process.pid)
        while not done.is_set():
            try:
                tree = [parent, *parent.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
            except psutil.Error:
                pass
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = process.communicate()
    done.set()
    sampler.join()
    if process.returncode != 0:
        errors = [line for line in err.splitlines() if "Error" in line or "Exception" in line]
        return {
            "failed": (errors or [err.strip()[-300:]])[0][:300],
            "peak_rss_mb": round(peak / 2**20),
        }
    result = json.loads(out.strip().splitlines()[-1])
    result["peak_rss_mb"] = round(peak / 2**20)
    return result


def prepare(data: Path, work: Path, **log: Any) -> None:
    """An empty `work` directory, and the log `generate_log(data, **log)` writes, made once
    and kept for later runs."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    if not (data / "_generator.json").exists():
        shutil.rmtree(data, ignore_errors=True)
        generate_log(data, **log)


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


def formats_markdown(formats: dict[str, Any]) -> list[str]:
    json_run, parquet_run = formats["json"], formats["parquet"]
    if "parquet_to_json" not in formats:
        failed = json_run.get("failed") or parquet_run.get("failed")
        return ["", f"JSON vs Parquet, {formats['events']:,} events: failed: {failed}"]
    rows = [
        "",
        f"JSON vs typed Parquet (measured {formats.get('measured', 'with the sizes above')}), "
        f"the same {formats['events']:,} events backfilled into empty tables in one run: "
        f"JSON {json_run['seconds']:.1f} s, Parquet "
        f"{parquet_run['seconds']:.1f} s: Parquet takes {formats['parquet_to_json']:.2f}x "
        "the JSON time (target: at most 0.5x). Where the time went (s):",
        "",
        "| step | JSON | Parquet |",
        "| --- | ---: | ---: |",
    ]
    for step in dict.fromkeys([*json_run["profile"], *parquet_run["profile"]]):
        seconds = [
            run["profile"].get(step, {}).get("seconds", 0.0) for run in (json_run, parquet_run)
        ]
        rows.append(f"| {step} | {seconds[0]:.1f} | {seconds[1]:.1f} |")
    return rows


def nightly_markdown(nightly: dict[str, Any]) -> list[str]:
    if "failed" in nightly:
        return [
            "",
            f"Nightly run at {nightly['events']:,} events of history: failed: {nightly['failed']}",
        ]
    night, full, alone = nightly["night"], nightly["full_refold"], nightly["night_alone"]
    rows = [
        "",
        f"Nightly: {nightly['events']:,} events of history over 30 nights in the tables, then "
        f"one night of {night['records_read']:,} new events (10% of them late: a `seq` at or "
        "below their key's stored `last_seq`), each run in the same process, one after the "
        f"other (peak RSS of the process {nightly['peak_rss_mb']:,} MB):",
        "",
        "| run | seconds | keys folded | resumed | re-folded | history events read |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, r in (
        ("the night, onto the history", night),
        ("`--full`: every key re-folded from the events table", full),
        ("the night alone, into empty tables", alone),
    ):
        rows.append(
            f"| {label} | {r['seconds']:.1f} | {r['keys_folded']:,} | {r['keys_resumed']:,} "
            f"| {r['keys_refolded']:,} | {r['history_events_read']:,} |"
        )
    rows += [
        "",
        f"The night costs {night['seconds'] / alone['seconds']:.2f}x the night alone and "
        f"{night['seconds'] / full['seconds']:.0%} of the full re-fold.",
    ]
    if night.get("profile") and full.get("profile"):
        steps = list(dict.fromkeys([*night["profile"], *full["profile"]]))
        rows += [
            "",
            "Where the night's time went, beside the full re-fold's (seconds of each step's "
            "Spark jobs; `outside Spark jobs`: the driver's own work):",
            "",
            "| step | the night | `--full` |",
            "| --- | ---: | ---: |",
            *(
                f"| {step} | {night['profile'].get(step, {}).get('seconds', 0):.1f} "
                f"| {full['profile'].get(step, {}).get('seconds', 0):.1f} |"
                for step in steps
            ),
        ]
    history = nightly.get("history")
    if history:
        rows.append(
            f"The history itself, the first run into empty tables (the full historical backfill: "
            f"{history['records_read']:,} lines, {history['keys_folded']:,} keys, events table "
            f"written): {history['seconds']:.1f} s, {night['seconds'] / history['seconds']:.1%} "
            "of which the night costs."
        )
    return rows


def bench_small_runs(out: Path) -> dict[str, Any]:
    """Whole processes, as a scheduler starts them: a night of about 200,000 events onto
    tables holding the four days before it, and `backfill demo` (its two backfill steps)."""
    data, work = out / "small-events", out / "small-runs"
    prepare(data, work, events=1_000_000, keys=5_000, seed=7, days=5, files_per_day=4)
    table = work / "state"
    history = ["--source", str(data), "--to", str(SMALL_NIGHT - timedelta(days=1)), "--full"]
    night = ["--source", str(data), "--from", str(SMALL_NIGHT)]
    print("  small runs: history, then the night as a whole process ...", file=sys.stderr)
    _cli(["run", *history, "--table", str(table)], cwd=work)
    seconds, output = _cli(["run", *night, "--table", str(table)], cwd=work)
    print("  small runs: backfill demo ...", file=sys.stderr, flush=True)
    demo_seconds, demo_output = _cli(["demo"], cwd=work)
    took = [float(m) for m in re.findall(r"took\s+([0-9.]+)s", demo_output)]
    records = re.search(r"read\s+([0-9,]+) records", output)
    return {
        "night_seconds": round(seconds, 1),
        "night_records": int(records.group(1).replace(",", "")) if records else None,
        "demo_seconds": round(demo_seconds, 1),
        "demo_steps_seconds": took,
    }


def _cli(args: list[str], cwd: Path) -> tuple[float, str]:
    """Run `backfill ARGS` as its own process; its wall time and what it printed."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(HERE.parent)},
    )
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"backfill {' '.join(args)} failed: {done.stderr[-2000:]}")
    return seconds, done.stdout + done.stderr


def scaling_markdown(report: dict[str, Any]) -> list[str]:
    """Cores, the large size, and whole-process small runs, where measured."""
    rows: list[str] = []
    sizes = {size["events"]: size["contenders"] for size in report["sizes"]}
    largest = max(sizes) if sizes else None
    if largest and "backfill_one_core" in sizes[largest]:
        one, two = sizes[largest]["backfill_one_core"], sizes[largest]["backfill_empty"]
        if "failed" not in one and "failed" not in two:
            rows += [
                "",
                f"Cores, {largest:,} events: `local[1]` {one['seconds']:.1f} s, `local[2]` "
                f"{two['seconds']:.1f} s: a second core makes the backfill "
                f"{one['seconds'] / two['seconds']:.2f}x faster.",
            ]
    large = report.get("large")
    if large and largest:
        result = large["contenders"]["backfill_empty"]
        if "failed" in result:
            rows += ["", f"{large['events']:,} events: failed: {result['failed']}"]
        else:
            base = sizes[largest]["backfill_empty"]
            rows += [
                "",
                f"{large['events']:,} events with the default settings: {result['seconds']:.1f} s "
                f"({result['ratio_to_floor']:.2f}x its floor of "
                f"{large['contenders']['spark_floor']['seconds']:.1f} s), "
                f"{result['seconds'] / base['seconds']:.2f}x the {largest:,}-event time for "
                f"{large['events'] / largest:.0f}x the events; peak RSS "
                f"{result['peak_rss_mb']:,} MB ({base['peak_rss_mb']:,} MB at {largest:,}).",
            ]
    small = report.get("small_runs")
    if small:
        steps = ", ".join(f"{s:.1f} s" for s in small["demo_steps_seconds"])
        rows += [
            "",
            "Small runs, each a whole process (Python, JVM and Spark's start included): a "
            f"night of {small['night_records']:,} records onto tables holding the four days "
            f"before it, {small['night_seconds']:.1f} s; `backfill demo` "
            f"{small['demo_seconds']:.1f} s, its two backfill steps {steps}.",
        ]
    return rows


def machine() -> dict[str, Any]:
    java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr.splitlines()
    return {
        "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "java": java[0] if java else "unknown",
        "platform": platform.platform(),
    }


def markdown(report: dict[str, Any]) -> str:
    rows = [
        f"Measured {report.get('sizes_measured', report['date'])} on "
        f"{report['machine']['cpus']} cores, "
        f"{report['machine']['memory_gb']} GiB ({report['machine']['java']}), in one run. "
        "Seconds exclude Spark's session start.",
        "",
        "| events | contender | seconds | lines/s | x floor | peak RSS MB | notes |",
        "| ---: | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for size in report["sizes"]:
        for name in ORDER:
            r = size["contenders"][name]
            if "failed" in r:
                rows.append(
                    f"| {size['events']:,} | {name} | failed | | | {r['peak_rss_mb']:,} "
                    f"| {r['failed']} |"
                )
                continue
            notes = ""
            if name == "backfill_one_percent":
                notes = (
                    f"{r['keys_corrected']:,} keys corrected; MERGE removed "
                    f"{r['files_removed']} of {r['table_files']} files, added "
                    f"{r['files_added']}, {r['deletion_vectors_added']} deletion vectors, "
                    f"{r.get('rows_copied', 0):,} unchanged rows rewritten"
                )
            rows.append(
                f"| {size['events']:,} | {name} | {r['seconds']:.1f} | {r['lines_per_second']:,} "
                f"| {r['ratio_to_floor']:.2f} | {r['peak_rss_mb']:,} | {notes} |"
            )
    if len(report["sizes"]) > 1:
        small, large = report["sizes"][0], report["sizes"][-1]
        growth = large["events"] / small["events"]
        cost = (
            large["contenders"]["backfill_empty"]["seconds"]
            / small["contenders"]["backfill_empty"]["seconds"]
        )
        rows += ["", f"Full backfill: {growth:.0f}x the events cost {cost:.1f}x the time."]
    profiled = report["sizes"][-1] if report["sizes"] else None
    profile = profiled["contenders"]["backfill_empty"].get("profile") if profiled else None
    if profiled and profile:
        rows += [
            "",
            f"Where the full backfill's time went at {profiled['events']:,} events (Spark's event "
            "log, by the step that started each job; `other`: jobs outside any step; `outside "
            "Spark jobs`: the driver's own work between jobs, such as planning and Delta's log):",
            "",
            "| step | seconds of its jobs | executor CPU seconds | shuffle written MB |",
            "| --- | ---: | ---: | ---: |",
            *(
                f"| {name} | {p['seconds']:.1f} | {p['cpu_seconds']:.1f} "
                f"| {p['shuffle_written_mb']:,.0f} |"
                for name, p in profile.items()
            ),
        ]
    rows += scaling_markdown(report)
    if report.get("nightly"):
        rows += nightly_markdown(report["nightly"])
    if report.get("formats"):
        rows += formats_markdown(report["formats"])
    hot = report.get("hot_key")
    if hot and "failed" in hot:
        rows += ["", f"Hot key ({HOT_KEY_EVENTS:,} events on one key): failed: {hot['failed']}"]
    elif hot:
        rows += [
            "",
            f"Hot key: {hot['events']:,} events on one key folded in {hot['seconds']:.1f} s "
            f"with the default settings, peak RSS {hot['peak_rss_mb']:,} MB, balance "
            f"{'matches' if hot['balance_matches'] else 'DOES NOT match'} the check.",
        ]
    return "\n".join(rows) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1000000,10000000")
    parser.add_argument("--large", type=int, default=30_000_000, help="floor and backfill only")
    parser.add_argument("--nightly", type=int, default=10_000_000, help="events of history")
    parser.add_argument("--small", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument(
        "--formats", type=int, default=2_000_000, help="events for JSON vs Parquet (0: skip)"
    )
    parser.add_argument("--out", default=str(HERE / "out"))
    args = parser.parse_args()
    out = Path(args.out)
    today = time.strftime("%Y-%m-%d")
    sizes = [bench_size(int(n), out) for n in args.sizes.split(",") if n]
    if sizes:
        report: dict[str, Any] = {"sizes": sizes}
        print("  hot key: one key, 5M events ...", file=sys.stderr, flush=True)
        report["hot_key"] = run_contender("hot_key", out, out)
    else:  # `--sizes ''`: the size figures stay from their run
        report = json.loads((HERE / "results.json").read_text())
        report["sizes_measured"] = report.get("sizes_measured", report["date"])
    # A part not run this time keeps its figures from the last run that measured it.
    if args.large:
        report["large"] = bench_size(args.large, out, LARGE_ORDER)
    if args.small:
        report["small_runs"] = bench_small_runs(out)
    if args.nightly:
        report["nightly"] = bench_nightly(args.nightly, out)
    if args.formats:
        report["formats"] = {**bench_formats(args.formats, out), "measured": today}
    report.update(date=today, machine=machine())
    (HERE / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    (HERE / "results.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
