"""The benchmark's figures as Markdown tables: what benchmarks/results.md holds."""

from __future__ import annotations

from typing import Any

from benchmarks.contenders import HOT_KEY_EVENTS
from benchmarks.scenarios import ORDER


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
