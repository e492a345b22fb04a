"""docs/performance.md, rendered from benchmarks/results.json and benchmarks/notes.md.

`make bench` measures and then renders; `python -m benchmarks.render` renders again from the
stored figures without measuring anything. Every figure on the page comes from results.json,
grouped under the run that measured it (its date, the commit of the code, whether the tables
had deletion vectors), so figures of different runs are never mixed in one table or ratio.
benchmarks/notes.md holds the hand-written readings: a reading of a part is shown under that
part's run only while results.json still holds the figures of the commit it was written for.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.contenders import HOT_KEY_EVENTS

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results.json"
NOTES = ROOT / "benchmarks" / "notes.md"
PAGE = ROOT / "docs" / "performance.md"

# The parts of results.json, in the order a run's section shows them.
PARTS = ("sizes", "large", "hot_key", "small_runs", "trust", "nightly", "formats", "upkeep")
PART_TITLES = {
    "sizes": "The full backfill and the other contenders, by size",
    "large": "The large size",
    "hot_key": "One hot key",
    "small_runs": "Small runs as whole processes",
    "trust": "Verifying a large state, and what a night's fingerprint costs",
    "nightly": "Nightly runs",
    "formats": "JSON vs typed Parquet",
    "upkeep": "Nights over a long stretch, with and without upkeep",
}

Stamp = dict[str, Any]
Rows = list[str]


# --- the parts -----------------------------------------------------------------------------


def _contender_row(events: int, name: str, r: dict[str, Any]) -> str:
    if "failed" in r:
        return f"| {events:,} | {name} | failed | | | {r['peak_rss_mb']:,} | {r['failed']} |"
    notes = ""
    if name == "backfill_one_percent":
        notes = (
            f"{r['keys_corrected']:,} keys corrected; MERGE removed "
            f"{r['files_removed']} of {r['table_files']} files, added "
            f"{r['files_added']}, {r['deletion_vectors_added']} deletion vectors, "
            f"{r.get('rows_copied', 0):,} unchanged rows rewritten"
        )
    return (
        f"| {events:,} | {name} | {r['seconds']:.1f} | {r['lines_per_second']:,} "
        f"| {r['ratio_to_floor']:.2f} | {r['peak_rss_mb']:,} | {notes} |"
    )


def _sizes_table(sizes: list[dict[str, Any]]) -> Rows:
    rows = [
        "Seconds exclude Spark's session start; peak RSS is the whole process tree (JVM and "
        "Python workers); `x floor` is the time over `spark_floor`'s at the same size.",
        "",
        "| events | contender | seconds | lines/s | x floor | peak RSS MB | notes |",
        "| ---: | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for size in sizes:
        for name, r in size["contenders"].items():
            rows.append(_contender_row(size["events"], name, r))
    return rows


def _profile_table(profile: dict[str, Any]) -> Rows:
    return [
        "| step | seconds of its jobs | executor CPU seconds | shuffle written MB |",
        "| --- | ---: | ---: | ---: |",
        *(
            f"| {name} | {p['seconds']:.1f} | {p['cpu_seconds']:.1f} "
            f"| {p['shuffle_written_mb']:,.0f} |"
            for name, p in profile.items()
        ),
    ]


def sizes_section(report: dict[str, Any], with_large: bool) -> Rows:
    sizes = list(report["sizes"])
    if with_large:
        sizes.append(report["large"])
    rows = _sizes_table(sizes)
    small, large = report["sizes"][0], report["sizes"][-1]
    empty = [s["contenders"]["backfill_empty"] for s in (small, large)]
    if len(report["sizes"]) > 1 and not any("failed" in r for r in empty):
        growth = large["events"] / small["events"]
        rows += [
            "",
            f"Full backfill: {growth:.0f}x the events cost "
            f"{empty[1]['seconds'] / empty[0]['seconds']:.1f}x the time.",
        ]
    profile = large["contenders"]["backfill_empty"].get("profile")
    if profile:
        rows += [
            "",
            f"Where the full backfill's time went at {large['events']:,} events (Spark's event "
            "log, by the step that started each job; `other`: jobs outside any step; `outside "
            "Spark jobs`: the driver's own work between jobs, such as planning and Delta's log):",
            "",
            *_profile_table(profile),
        ]
    return rows


def large_section(report: dict[str, Any]) -> Rows:
    return _sizes_table([report["large"]])


def hot_key_section(report: dict[str, Any]) -> Rows:
    hot = report["hot_key"]
    if "failed" in hot:
        return [f"{HOT_KEY_EVENTS:,} events on one key: failed: {hot['failed']}"]
    return [
        f"{hot['events']:,} events on one key folded in {hot['seconds']:.1f} s with the default "
        f"settings, peak RSS {hot['peak_rss_mb']:,} MB; the balance "
        f"{'matches' if hot['balance_matches'] else 'DOES NOT match'} the check."
    ]


def small_runs_section(report: dict[str, Any]) -> Rows:
    small = report["small_runs"]
    steps = ", ".join(f"{s:.1f} s" for s in small["demo_steps_seconds"])
    started = "as a scheduler starts it (Python, the JVM and Spark's start included)"
    if "history_seconds" in small:
        started = (
            "as a scheduler or an analyst starts it (Python's start included, and the JVM's "
            "and Spark's for the runs; `history` and `diff` read the Delta log without them)"
        )
    return [
        f"Each a whole process, {started}:",
        "",
        "| run | seconds |",
        "| --- | ---: |",
        f"| a night of {small['night_records']:,} records onto tables holding the four days "
        f"before it | {small['night_seconds']:.1f} |",
        *_tiny_night_rows(small),
        *_history_and_diff_rows(small),
        *_verify_rows(small),
        f"| `backfill demo`, the whole command | {small['demo_seconds']:.1f} |",
        "",
        f"The demo's two backfill steps took {steps} of it (the `took` lines it prints).",
    ]


def _tiny_night_rows(small: dict[str, Any]) -> Rows:
    """The night of three records and the session floor, in the runs that measured them."""
    if "tiny_night_seconds" not in small:
        return []
    return [
        f"| a night of 3 records onto the same tables | {small['tiny_night_seconds']:.1f} |",
        "| the session floor: start the same session, read one Delta table, append one row "
        f"| {small['session_floor_seconds']:.1f} |",
        *(
            [
                "| a night of 3 other records, without the JVM's class archive "
                f"| {small['tiny_night_without_archive_seconds']:.1f} |",
                "| the session floor, without the JVM's class archive "
                f"| {small['session_floor_without_archive_seconds']:.1f} |",
            ]
            if "tiny_night_without_archive_seconds" in small
            else []
        ),
    ]


def _history_and_diff_rows(small: dict[str, Any]) -> Rows:
    """`backfill history` and `diff` of the night, in the runs that measured them."""
    if "history_seconds" not in small:
        return []
    diff = f"{small['diff_keys']:,} keys changed" if small["diff_keys"] is not None else "?"
    return [
        f"| `backfill history` of that state table ({small['history_versions']} versions) "
        f"| {small['history_seconds']:.2f} |",
        f"| `backfill diff` of that night ({diff}, by {small['diff_method']}) "
        f"| {small['diff_seconds']:.2f} |",
    ]


def _verify_rows(small: dict[str, Any]) -> Rows:
    """`backfill verify` and `verify --deep` of the state, in the runs that measured them."""
    if "verify_seconds" not in small:
        return []
    rows = f"{small['verify_rows']:,} keys"
    return [
        f"| `backfill verify` of that state table ({rows}: its files against its fingerprint) "
        f"| {small['verify_seconds']:.2f} |",
        f"| `backfill verify --deep` (every key re-folded from the events table) "
        f"| {small['verify_deep_seconds']:.2f} |",
    ]


def trust_section(report: dict[str, Any]) -> Rows:
    trust = report["trust"]
    if "failed" in trust:
        return [f"{trust['events']:,} events: the backfill failed: {trust['failed']}"]
    return [
        f"The state of a full backfill of {trust['events']:,} events "
        f"({trust['backfill_seconds']:.1f} s), each command a whole process:",
        "",
        "| run | seconds |",
        "| --- | ---: |",
        *_verify_rows(trust),
        "",
        f"A night's fingerprint is kept from the rows it changes. Summing the hashes of "
        f"{trust['night_rows']:,} changed rows (a night changing 1% of the keys, its change "
        f"frame in memory as the run holds it) took {trust['night_fingerprint_seconds']:.3f} s; "
        f"counting all {trust['state_rows']:,} rows from the table, what every night would pay "
        f"without it, took {trust['whole_fingerprint_seconds']:.3f} s.",
    ]


def nightly_section(report: dict[str, Any]) -> Rows:
    nightly = report["nightly"]
    if "failed" in nightly:
        return [f"{nightly['events']:,} events of history: failed: {nightly['failed']}"]
    night, full, alone = nightly["night"], nightly["full_refold"], nightly["night_alone"]
    rows = [
        f"A history of {nightly['events']:,} events over 30 nights in the three tables, then one "
        f"night of {night['records_read']:,} new events (a tenth of them late: a `seq` at or "
        "below their key's stored `last_seq`, the rest continuing their keys' streams). After "
        "the history, the night, `--full` and the night alone each run in a fresh Spark "
        "session with the event log on, one after the other, all in one process (peak RSS of "
        f"the process {nightly['peak_rss_mb']:,} MB):",
        "",
        "| run | seconds | keys folded | resumed | re-folded | history events read |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    history = nightly.get("history")
    if history:
        rows.append(
            f"| the history: {history['records_read']:,} lines into empty tables (the full "
            f"historical backfill) | {history['seconds']:.1f} | {history['keys_folded']:,} "
            f"| 0 | {history['keys_folded']:,} | {full['history_events_read']:,} |"
        )
    for label, r in (
        ("the night, onto the history", night),
        ("`--full`: every key re-folded from the events table", full),
        ("the night alone, into empty tables", alone),
    ):
        rows.append(
            f"| {label} | {r['seconds']:.1f} | {r['keys_folded']:,} | {r['keys_resumed']:,} "
            f"| {r['keys_refolded']:,} | {r['history_events_read']:,} |"
        )
    untouched = full["keys_folded"] - night["keys_folded"]
    share = night["history_events_read"] / full["history_events_read"]
    rows += [
        "",
        f"The night read the {night['records_read']:,} lines it brought; "
        f"{night['keys_resumed']:,} keys resumed from their stored rows with their new events "
        f"only; {night['keys_refolded']:,} keys with a late event were re-folded from their "
        f"history ({share:.0%} of the events table); the other {untouched:,} keys were neither "
        "read nor written.",
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
    return rows


def formats_section(report: dict[str, Any]) -> Rows:
    formats = report["formats"]
    json_run, parquet_run = formats["json"], formats["parquet"]
    if "failed" in json_run or "failed" in parquet_run:
        failed = json_run.get("failed") or parquet_run.get("failed")
        return [f"JSON vs Parquet, {formats['events']:,} events: failed: {failed}"]
    keys = json_run.get("keys")
    rows = [
        f"The same {formats['events']:,} events"
        + (f" ({keys:,} keys, 5 days)" if keys else "")
        + " written as JSON Lines and as typed Parquet (the generator's `--format parquet`: "
        "timestamps, an int64 `seq`, a decimal `amount`), each backfilled into empty tables. "
        "Seconds of each step's Spark jobs:",
        "",
        "| step | JSON (s) | Parquet (s) |",
        "| --- | ---: | ---: |",
    ]
    for step in dict.fromkeys([*json_run["profile"], *parquet_run["profile"]]):
        seconds = [r["profile"].get(step, {}).get("seconds", 0.0) for r in (json_run, parquet_run)]
        rows.append(f"| {step} | {seconds[0]:.1f} | {seconds[1]:.1f} |")
    rows.append(
        f"| **whole run** | **{json_run['seconds']:.1f}** | **{parquet_run['seconds']:.1f}** |"
    )
    return rows


# The upkeep arms, in the order a page shows them (a run before the `auto` arm has two).
UPKEEP_ARMS = {
    "none": "no upkeep",
    "weekly": "maintained",
    "auto": "auto compaction",
}


def upkeep_section(report: dict[str, Any]) -> Rows:
    """A night's time and the tables' files at a few nights, and the curve of every arm."""
    upkeep = report["upkeep"]
    arms, nights, every = upkeep["arms"], upkeep["nights"], upkeep["maintain_every"]
    names = [arm for arm in UPKEEP_ARMS if arm in arms]
    marks = sorted({n for n in (1, 10, 100, nights) if n <= nights})
    described = {
        "none": "one never maintained",
        "weekly": f"one with `backfill maintain` every {every} nights (after that night's run)",
        "auto": "one with Delta's auto compaction on its three tables (`delta.autoOptimize."
        f"autoCompact`, a table or bucket compacted once it holds {every} small files)",
    }
    rows = [
        f"{nights} nights of {upkeep['events_per_night']:,} events over {upkeep['keys']:,} keys, "
        f"each night run into {('two', 'three')[len(names) - 2]} sets of tables in one warm "
        "session: " + "; ".join(described[arm] for arm in names) + ".",
        "",
        "| night | "
        + " | ".join(f"seconds, {UPKEEP_ARMS[a]}" for a in names)
        + " | "
        + " | ".join(f"events files, {UPKEEP_ARMS[a]}" for a in names)
        + " | "
        + " | ".join(f"state files, {UPKEEP_ARMS[a]}" for a in names)
        + " |",
        "| ---: " * (1 + 3 * len(names)) + "|",
    ]
    for n in marks:
        at = [arms[a][n - 1] for a in names]
        cells = [f"{r['seconds']:.1f}" for r in at]
        cells += [f"{r['events_files']:,}" for r in at]
        cells += [f"{r['state_files']:,}" for r in at]
        rows.append(f"| {n} | " + " | ".join(cells) + " |")
    maintains = [m["seconds"] for m in upkeep["maintains"]]
    if maintains:
        rows += [
            "",
            f"Each maintain took {min(maintains):.1f}-{max(maintains):.1f} s "
            f"({len(maintains)} of them).",
        ]
    if nights >= 15:
        rows += ["", "Mean seconds of nights 8-12 and of the last five nights:", ""]
        for arm in names:
            early, late = _upkeep_means(arms[arm])
            rows.append(
                f"- {UPKEEP_ARMS[arm]}: {early:.1f} s, then {late:.1f} s ({late / early:.2f}x)"
            )
    if "states_equal" in upkeep:
        rows += [
            "",
            "Every arm's state table ended equal, row for row: "
            + ("yes." if upkeep["states_equal"] else "**no**."),
        ]
    if "key_filter" in upkeep:
        rows += [
            "",
            "What a literal `key IN (...)` filter could skip in the events table after the last "
            "night, by the files' key ranges in the log and the Parquet row groups' key "
            "statistics (reached / all):",
            "",
            "| arm | keys | files reached | row groups reached |",
            "| --- | ---: | ---: | ---: |",
        ]
        for arm in names:
            for reach in upkeep["key_filter"][arm]:
                rows.append(
                    f"| {UPKEEP_ARMS[arm]} | {reach['keys']} "
                    f"| {reach['files_reached']:,} / {reach['files']:,} "
                    f"| {reach['row_groups_reached']:,} / {reach['row_groups']:,} |"
                )
    rows += ["", *_upkeep_chart({arm: arms[arm] for arm in names})]
    return rows


def _upkeep_means(rows: list[dict[str, Any]]) -> tuple[float, float]:
    """A night's mean seconds around night 10 (nights 8-12) and over the last five nights."""
    early = [r["seconds"] for r in rows[7:12]]
    late = [r["seconds"] for r in rows[-5:]]
    return sum(early) / len(early), sum(late) / len(late)


def _upkeep_chart(arms: dict[str, list[dict[str, Any]]]) -> Rows:
    """A night's seconds and the events table's files after it, night by night, one line per
    arm (two Mermaid charts GitHub draws)."""
    places = zip(arms, ORDINALS, strict=False)
    order = ", ".join(f"{UPKEEP_ARMS[arm]} ({place})" for arm, place in places)
    nights = len(next(iter(arms.values())))

    def chart(title: str, field: str, axis: str, form: str) -> Rows:
        top = max(r[field] for rows in arms.values() for r in rows)
        return [
            "```mermaid",
            "xychart-beta",
            f'    title "{title}: {order}"',
            f'    x-axis "night" 1 --> {nights}',
            f'    y-axis "{axis}" 0 --> {top * 1.1:.0f}',
            *(
                "    line [" + ", ".join(format(r[field], form) for r in rows) + "]"
                for rows in arms.values()
            ),
            "```",
        ]

    return [
        *chart("A night's seconds", "seconds", "seconds", ".1f"),
        "",
        *chart("The events table's files after each night", "events_files", "files", "d"),
    ]


ORDINALS = ("first line", "second", "third")


SECTIONS: dict[str, Callable[[dict[str, Any]], Rows]] = {
    "large": large_section,
    "hot_key": hot_key_section,
    "small_runs": small_runs_section,
    "trust": trust_section,
    "nightly": nightly_section,
    "formats": formats_section,
    "upkeep": upkeep_section,
}


# --- the targets ---------------------------------------------------------------------------


def _ok(result: dict[str, Any] | None) -> bool:
    return result is not None and "failed" not in result


# The upkeep target is about a year of nights; a run of fewer than this many is not judged,
# and one shorter than a year is judged with its span named.
UPKEEP_JUDGED_FROM = 20


def targets(report: dict[str, Any], parts: list[str]) -> list[tuple[str, str, bool]]:
    """Each target of the performance issue the parts of one run can judge: (target, what
    was measured, met). A target that needs figures of two parts is judged only when both
    were measured in the same run."""
    found: list[tuple[str, str, bool]] = []
    sizes = (
        {s["events"]: s["contenders"] for s in report.get("sizes", [])} if "sizes" in parts else {}
    )
    largest = max(sizes) if sizes else None
    if largest:
        c = sizes[largest]
        empty, replay = c.get("backfill_empty"), c.get("python_replay")
        if _ok(empty) and _ok(replay):
            ratio, vs_replay = empty["ratio_to_floor"], empty["seconds"] / replay["seconds"]
            found.append(
                (
                    f"the full backfill at most 3x Spark's floor at {largest:,} events, and "
                    "faster than the Python replay",
                    f"{ratio:.2f}x the floor; {vs_replay:.2f}x the Python replay's time",
                    ratio <= 3 and vs_replay < 1,
                )
            )
        one = c.get("backfill_one_core")
        if _ok(empty) and _ok(one):
            speedup = one["seconds"] / empty["seconds"]
            found.append(
                (
                    "a second core at least 1.7x faster (`local[2]` against `local[1]`)",
                    f"{speedup:.2f}x",
                    speedup >= 1.7,
                )
            )
    if largest and "large" in parts:
        large = report["large"]
        result = large["contenders"].get("backfill_empty")
        base = sizes[largest].get("backfill_empty")
        if _ok(result) and _ok(base):
            growth = result["seconds"] / base["seconds"]
            found.append(
                (
                    f"{large['events']:,} events finish with the default settings, in at most "
                    f"3.3x the {largest:,}-event time",
                    f"finished; {growth:.2f}x the time for "
                    f"{large['events'] / largest:.0f}x the events",
                    growth <= 3.3,
                )
            )
        elif result is not None:
            found.append((f"{large['events']:,} events finish", "failed", False))
    if "small_runs" in parts:
        small = report["small_runs"]
        found.append(
            (
                "a 200,000-record night onto existing tables within 30 s as a whole process",
                f"{small['night_seconds']:.1f} s",
                small["night_seconds"] <= 30,
            )
        )
        if small.get("tiny_night_to_floor") is not None:
            found.append(
                (
                    "a night of a few records within 1.3x the session floor",
                    f"{small['tiny_night_seconds']:.1f} s, "
                    f"{small['tiny_night_to_floor']:.2f}x the floor",
                    small["tiny_night_to_floor"] <= 1.3,
                )
            )
        second = small["demo_steps_seconds"][-1] if small["demo_steps_seconds"] else None
        found.append(
            (
                "`backfill demo` within 45 s after set-up, its second act within 10 s",
                f"{small['demo_seconds']:.1f} s, second act {second:.1f} s"
                if second is not None
                else f"{small['demo_seconds']:.1f} s",
                small["demo_seconds"] <= 45 and second is not None and second <= 10,
            )
        )
    if "small_runs" in parts and "history_seconds" in report["small_runs"]:
        small = report["small_runs"]
        found.append(
            (
                "`backfill history` within 2 s and `backfill diff` of a night within 5 s, as "
                "whole processes",
                f"{small['history_seconds']:.2f} s and {small['diff_seconds']:.2f} s",
                small["history_seconds"] <= 2 and small["diff_seconds"] <= 5,
            )
        )
    nightly = report.get("nightly") if "nightly" in parts else None
    if nightly and "failed" not in nightly:
        night, alone = nightly["night"], nightly["night_alone"]
        history = nightly.get("history")
        if history:
            share = night["seconds"] / history["seconds"]
            found.append(
                (
                    "a night at most 20% of the full backfill (the history from the raw log)",
                    f"{share:.1%}",
                    share <= 0.20,
                )
            )
        full = nightly["full_refold"]["seconds"]
        found.append(
            (
                "a night never costs more than `--full` (every key re-folded from the events "
                "table, without re-reading the raw log)",
                f"{night['seconds'] / full:.0%} of `--full`",
                night["seconds"] <= full,
            )
        )
        ratio = night["seconds"] / alone["seconds"]
        found.append(("a night at most 1.5x the night alone", f"{ratio:.2f}x", ratio <= 1.5))
    formats = report.get("formats") if "formats" in parts else None
    if formats and "parquet_to_json" in formats:
        ratio = formats["parquet_to_json"]
        found.append(
            ("typed Parquet at most 0.5x the JSON time, whole run", f"{ratio:.2f}x", ratio <= 0.5)
        )
    upkeep = report.get("upkeep") if "upkeep" in parts else None
    if upkeep and upkeep["nights"] >= UPKEEP_JUDGED_FROM:
        early, late = _upkeep_means(upkeep["arms"]["weekly"])
        ratio = late / early
        span = upkeep["nights"]
        found.append(
            (
                "with a weekly maintain, the last night at most 1.2x night 10 (means of "
                "nights 8-12 and of the last five)",
                f"{ratio:.2f}x over {span} nights" + ("" if span >= 365 else " (not a year)"),
                ratio <= 1.2,
            )
        )
    return found


# --- the page ------------------------------------------------------------------------------


def stamps(report: dict[str, Any]) -> dict[str, Stamp]:
    """When and on what each part present was measured. Results written before parts were
    stamped give their dates only."""
    recorded: dict[str, Stamp] = report.get("measured", {})
    found: dict[str, Stamp] = {}
    for part in PARTS:
        if part not in report:
            continue
        stamp = recorded.get(part)
        if stamp is None:
            date = report.get("sizes_measured") if part == "sizes" else None
            if part == "formats":
                date = report["formats"].get("measured")
            stamp = {"date": date or report.get("date", "unknown"), "commit": "unknown"}
        found[part] = stamp
    return found


def notes(text: str) -> tuple[dict[str, str], dict[tuple[str, str], str]]:
    """benchmarks/notes.md: `## about` and `## earlier` (shown as they are), and `## PART @
    COMMIT` (the reading of that part's figures measured on that commit)."""
    general: dict[str, str] = {}
    readings: dict[tuple[str, str], str] = {}
    for block in re.split(r"^## ", text, flags=re.MULTILINE)[1:]:
        heading, _, body = block.partition("\n")
        name, _, commit = (s.strip() for s in heading.partition("@"))
        if commit:
            readings[(name, commit)] = body.strip()
        else:
            general[name] = body.strip()
    return general, readings


def _run_heading(stamp: Stamp, machine: dict[str, Any] | None) -> Rows:
    commit = stamp.get("commit", "unknown")
    heading = f"## The run of {stamp['date']}, code at {commit}"
    rows = [heading, ""]
    line = []
    if stamp.get("recorded_in"):
        line.append(f"Figures committed in {stamp['recorded_in']}.")
    if machine:
        line.append(
            f"{machine['cpus']} cores, {machine['memory_gb']} GiB, {machine['java']}, "
            f"Python {machine['python']}."
        )
    dv = stamp.get("deletion_vectors")
    if dv is True:
        line.append(
            "**Measured with deletion vectors on** (`tables.deletion_vectors: true`). Tables "
            "are created with them off unless the config says otherwise, so these figures are "
            "not what a default run does today: there a correcting MERGE rewrites the files "
            "that hold a corrected key instead of marking its old row deleted. Not yet "
            "re-measured with them off."
        )
    elif dv is False:
        line.append("Deletion vectors off (the default).")
    else:
        line.append("Whether the tables had deletion vectors was not recorded.")
    return [*rows, " ".join(line), ""]


def page(report: dict[str, Any], notes_text: str) -> str:
    general, readings = notes(notes_text)
    by_part = stamps(report)
    runs: dict[tuple[Any, ...], list[str]] = {}
    for part, stamp in by_part.items():
        key = (stamp["date"], stamp.get("commit"), stamp.get("deletion_vectors"))
        runs.setdefault(key, []).append(part)
    rows = [
        "# Performance",
        "",
        "<!-- Generated by `python -m benchmarks.render` from benchmarks/results.json and "
        "benchmarks/notes.md; `make bench` measures and renders it. Do not edit by hand. -->",
        "",
    ]
    if "about" in general:
        rows += [general["about"], ""]
    shown: set[tuple[str, str]] = set()
    for key in sorted(runs, key=lambda k: str(k[0]), reverse=True):  # the latest run first
        parts = runs[key]
        stamp = by_part[parts[0]]
        rows += _run_heading(stamp, stamp.get("machine") or report.get("machine"))
        with_large = "sizes" in parts and "large" in parts
        for part in parts:
            if part == "large" and with_large:
                continue  # its rows join the size table
            title = PART_TITLES[part]
            if part == "sizes" and with_large:
                title += " (the large size included)"
            section = (
                sizes_section(report, with_large) if part == "sizes" else SECTIONS[part](report)
            )
            rows += [f"### {title}", "", *section, ""]
        judged = targets(report, parts)
        if judged:
            rows += [
                "### Against the targets",
                "",
                "| target | measured | met |",
                "| --- | --- | --- |",
                *(f"| {t} | {m} | {'yes' if ok else 'no'} |" for t, m, ok in judged),
                "",
            ]
        for part in parts:
            reading = readings.get((part, stamp.get("commit", "")))
            if reading:
                shown.add((part, stamp.get("commit", "")))
                rows += [f"### Reading: {PART_TITLES[part]}", "", reading, ""]
    stale = [key for key in readings if key not in shown]
    for part, commit in stale:
        print(
            f"benchmarks/notes.md: the reading of {part} @ {commit} matches no figures in "
            "results.json; shown under Earlier measurements",
            file=sys.stderr,
        )
    if stale or "earlier" in general:
        rows += ["## Earlier measurements", ""]
        for part, commit in stale:
            rows += [
                f"### Reading: {PART_TITLES.get(part, part)}, as measured at {commit}",
                "",
                "(Its figures have since been re-measured; the run above replaces them.)",
                "",
                readings[(part, commit)],
                "",
            ]
        if "earlier" in general:
            rows += [general["earlier"], ""]
    return "\n".join(rows).rstrip() + "\n"


def render(results: Path = RESULTS, notes_path: Path = NOTES, out: Path = PAGE) -> str:
    """Write the page from the stored figures; return it."""
    report = json.loads(results.read_text())
    text = page(report, notes_path.read_text() if notes_path.exists() else "")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return text


def main() -> int:
    render()
    print(f"wrote {PAGE.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
