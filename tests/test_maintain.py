"""`backfill maintain` (contract section 9) on real Delta tables: it changes no row of any
version inside the retention window, the next run folds nothing because of it, it lands
when it overlaps a run, and versions outside the window are refused in one line.

Tables are read back with delta-rs (`deltalake`) too, not only by the session that wrote
them. Versions older than the window are made by an outside writer that moves a table's
log and files ten days into the past, as a table written ten days ago would be."""

from __future__ import annotations

import json
import os
from itertools import pairwise
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from pipelines.generate.log import FaultRates, generate_log
from pipelines.run import RunRequest, run_backfill
from pipelines.run import fold as fold_stage
from pipelines.schema import default_events_uri
from tests.cli import assert_one_line_error, run_main, run_python
from tests.helpers import (
    backfill,
    delta_rs_states,
    kept_fingerprint,
    rows_fingerprint,
    table_states,
)
from tests.reference import read_lines, reference_backfill

FAULTS = FaultRates(duplicate=0.05, conflict=0.02, late=0.05, lost=0.01, garbage=0.03)
DAY_NS = 24 * 3600 * 10**9
NAMES = ["state", "events", "quarantine"]


def maintain(spark, table: Path, *flags: str) -> list[dict]:
    result = run_main("maintain", "--table", str(table), "--json", *flags, spark=spark)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def versions_of(table: Path) -> dict[int, dict[str, dict]]:
    """Every version's rows, read with delta-rs (milliseconds a version, where Spark takes
    seconds)."""
    latest = DeltaTable(str(table)).version()
    return {version: delta_rs_states(table, version) for version in range(latest + 1)}


@pytest.mark.slow
def test_nights_with_a_maintain_every_two_equal_the_reference_and_keep_every_version(
    spark, config, tmp_path
):
    events, table = tmp_path / "events", tmp_path / "state"
    generate_log(events, events=1600, keys=40, seed=13, faults=FAULTS, days=2)  # 5 nights
    expected_all = reference_backfill(read_lines(events))
    delivered: list[str] = []
    maintained = 0
    for number, night in enumerate(sorted(events.glob("dt=*")), start=1):
        backfill(spark, config, [night], table)
        delivered += read_lines(night)
        expected = reference_backfill(delivered)
        assert table_states(spark, table) == expected.states, night.name
        if number % 2:
            continue
        before = versions_of(table)
        last = max(before)
        # Spark reads the oldest and the newest version too, before and after.
        spark_before = {v: table_states(spark, table, v) for v in (min(before), last)}

        reports = maintain(spark, table)

        assert [r["name"] for r in reports] == NAMES
        by_name = {r["name"]: r for r in reports}
        stored = by_name["events"]
        assert stored["compacted_files"] >= stored["compacted_into"] > 0
        assert stored["files_after"] <= stored["files_before"]
        for report in reports:
            assert report["version_after"] > report["version_before"]
            assert report["checkpoint_version"] == report["version_after"]
            assert report["removed_files"] == 0  # nothing is older than the window yet
        # The version it left carries the fingerprint of its rows (OPTIMIZE carries it over).
        assert kept_fingerprint(spark, table) == rows_fingerprint(spark, table)
        # Every version reads the same rows, and a diff across the maintain shows nothing.
        after = versions_of(table)
        assert {v: after[v] for v in before} == before
        assert {v: table_states(spark, table, v) for v in spark_before} == spark_before
        across = run_main("diff", "--table", str(table), "--from-version", str(last), "--json")
        assert across.returncode == 0 and across.stdout == "", across.stderr
        if not maintained:  # the night again: all stored already, nothing to fold
            again = backfill(spark, config, [night], table)
            assert again.keys.total == 0
        maintained += 1

    assert maintained >= 2
    assert table_states(spark, table) == expected_all.states
    read_by_delta_rs = delta_rs_states(table)
    assert {key: (row["balance"], row["event_count"]) for key, row in read_by_delta_rs.items()} == {
        key: (state["balance"], state["event_count"]) for key, state in expected_all.states.items()
    }
    stored_events = DeltaTable(default_events_uri(str(table))).to_pyarrow_table(
        columns=["event_id"]
    )
    ids = stored_events.column("event_id").to_pylist()
    assert len(ids) == len(set(ids)) == expected_all.valid_unique


def test_a_maintain_between_a_runs_commits_lands_and_the_state_is_exact(
    spark, config, tmp_path, monkeypatch
):
    """The run stores its events, folds, and before its state MERGE a maintain compacts all
    three tables under it: the MERGE lands on the compacted state, nothing is lost or
    doubled, and the next night resumes from the right mark."""
    events, table = tmp_path / "events", tmp_path / "state"
    generate_log(events, events=1500, keys=30, seed=17, faults=FAULTS, days=3)
    nights = sorted(events.glob("dt=*"))
    backfill(spark, config, [nights[0]], table)
    reports: list[list[dict]] = []
    unpatched = fold_stage.fold

    def fold_then_maintain(*args, **kwargs):
        folded = unpatched(*args, **kwargs)
        reports.append(maintain(spark, table))
        return folded

    monkeypatch.setattr(fold_stage, "fold", fold_then_maintain)
    overlapped = backfill(spark, config, [nights[1]], table)
    monkeypatch.setattr(fold_stage, "fold", unpatched)

    (during,) = reports
    assert all(r["version_after"] > r["version_before"] for r in during)
    assert overlapped.status == "committed"
    assert overlapped.table_version_after > during[0]["version_after"]  # after the maintain
    lines = [*read_lines(nights[0]), *read_lines(nights[1])]
    assert table_states(spark, table) == reference_backfill(lines).states

    backfill(spark, config, [nights[2]], table)  # resumes from the overlapped run's mark
    lines += read_lines(nights[2])
    assert table_states(spark, table) == reference_backfill(lines).states


def test_a_dry_run_says_what_it_would_do_and_changes_nothing(spark, config, tmp_path):
    events, table = tmp_path / "events", tmp_path / "state"
    generate_log(events, events=600, keys=20, seed=3, faults=FAULTS, days=2)
    for night in sorted(events.glob("dt=*"))[:2]:
        backfill(spark, config, [night], table)
    tables = [table, Path(f"{table}_events"), Path(f"{table}_quarantine")]
    before = [DeltaTable(str(t)).version() for t in tables]

    reports = maintain(spark, table, "--dry-run")
    text = run_main("maintain", "--table", str(table), "--dry-run", spark=spark)

    assert [DeltaTable(str(t)).version() for t in tables] == before
    assert [r["name"] for r in reports] == NAMES and all(r["dry_run"] for r in reports)
    assert [r["version_before"] for r in reports] == before
    stored = reports[1]
    assert stored["compacted_files"] == stored["files_before"] > 16  # 2 nights x 16 buckets
    assert all(r["files_after"] is None and r["retain_days"] == 7 for r in reports)
    assert text.returncode == 0
    lines = text.stdout.splitlines()
    assert len(lines) == 3 and all("would compact" in line for line in lines)


def test_the_events_table_is_laid_out_by_key_in_files_of_at_most_max_file_mb(
    spark, config, tmp_path
):
    """One bucket of a few MB and `events.max_file_mb: 1`: the maintain writes it as several
    files, each over its own range of keys (so a key filter could skip the others), and
    changes no row."""
    from pipelines.maintain import maintain as maintain_tables

    small_files = config.with_overrides(**{"events.buckets": 1, "events.max_file_mb": 1})
    events, table = tmp_path / "events", tmp_path / "state"
    generate_log(events, events=40_000, keys=400, seed=23, faults=FaultRates(), days=1)
    backfill(spark, small_files, [events], table)
    stored = default_events_uri(str(table))
    before = DeltaTable(stored)
    assert len(before.file_uris()) == 1 and before.version() == 1

    (_, report, _) = maintain_tables(
        spark,
        small_files,
        {"state": str(table), "events": stored, "quarantine": f"{table}_quarantine"},
    )

    assert report.files_before == 1 and report.files_after is not None
    assert report.files_after >= 2
    assert report.bytes_before > report.files_after * 0.5 * 2**20  # files of about 1 MB
    ranges = sorted(
        (action["min.key"], action["max.key"])
        for action in pa.table(DeltaTable(stored).get_add_actions(flatten=True)).to_pylist()
    )
    # Ranges in order, sharing at most a boundary key (Z-order spreads a key of many rows
    # over two neighbouring files): one key's rows sit in one or two of the files.
    assert all(low_next >= high for (_, high), (low_next, _) in pairwise(ranges)), ranges
    expected = reference_backfill(read_lines(events))
    assert table_states(spark, table) == expected.states
    ids = DeltaTable(stored).to_pyarrow_table(columns=["event_id"]).column("event_id")
    assert len(ids) == len(set(ids.to_pylist())) == expected.valid_unique


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (("--retain-days", "3"), "--retain-days 3"),
        (("--retain-days", "x"), "--retain-days"),
        (("--dry-rn",), "unrecognized arguments: --dry-rn"),
    ],
)
def test_a_bad_flag_is_one_line_before_spark(tmp_path, flags, words):
    result = run_main("maintain", "--table", str(tmp_path / "state"), *flags)
    assert_one_line_error(result, 2, words)


def test_a_table_that_is_not_there_is_one_line(spark, tmp_path):
    result = run_main("maintain", "--table", str(tmp_path / "nothing"), spark=spark)
    assert_one_line_error(result, 2, "is not a Delta table")


def move_into_the_past(table: Path, days: int) -> None:
    """An outside writer's edit: every commit of the table, and every file in it, dated
    `days` earlier, as if the table had been written then."""
    shift_ms = days * DAY_NS // 10**6
    for path in table.rglob("*"):
        if not path.is_file():
            continue
        if path.parent.name == "_delta_log" and path.name.endswith(".json"):
            actions = [json.loads(line) for line in path.read_text().splitlines() if line]
            for action in actions:
                for body in action.values():
                    for name in ("timestamp", "inCommitTimestamp", "deletionTimestamp"):
                        if isinstance(body, dict) and isinstance(body.get(name), int):
                            body[name] -= shift_ms
            path.write_text("".join(json.dumps(action) + "\n" for action in actions))
            # Hadoop's local file system would refuse the edit against its checksum file.
            path.with_name(f".{path.name}.crc").unlink(missing_ok=True)
        status = path.stat()
        moved = status.st_mtime_ns - days * DAY_NS
        os.utime(path, ns=(moved, moved))


def test_a_version_outside_the_window_is_refused_in_one_line(spark, config, tmp_path):
    """Two nights written ten days ago, one today: a maintain removes the files only the old
    versions needed, and `diff` (delta-rs) and `rollback` (Spark) refuse those versions in
    one line naming the window, as Delta's own time travel does."""
    events, table = tmp_path / "events", tmp_path / "state"
    generate_log(events, events=900, keys=20, seed=5, faults=FAULTS, days=3)
    nights = sorted(events.glob("dt=*"))
    for night in nights[:2]:
        backfill(spark, config, [night], table)
    old = DeltaTable(str(table)).version()
    move_into_the_past(table, days=10)
    spark.sparkContext._jvm.org.apache.spark.sql.delta.DeltaLog.clearCache()
    today = backfill(spark, config, [nights[2]], table).table_version_after
    latest_states = table_states(spark, table)

    (state, *_) = maintain(spark, table)

    assert state["removed_files"] > 0 and state["removed_bytes"] > 0
    assert table_states(spark, table) == latest_states
    words = "outside the retention window of 7 days (delta.deletedFileRetentionDuration"
    for command in (
        ("diff", "--table", str(table), "--from-version", str(old)),
        ("diff", "--table", str(table), "--from-version", "0", "--to-version", str(old), "--json"),
    ):
        refused = run_main(*command)  # delta-rs: no Spark needed to refuse
        assert_one_line_error(refused, 2, words)
        assert f"the oldest version inside the window is {today}" in refused.stderr
    refused = run_main("rollback", "--table", str(table), "--to-version", "0", spark=spark)
    assert_one_line_error(refused, 2, words)
    assert DeltaTable(str(table)).version() == state["version_after"]  # nothing restored
    inside = run_main("diff", "--table", str(table), "--from-version", str(today), "--json")
    assert inside.returncode == 0 and inside.stdout == "", inside.stderr  # maintain: no change
    assert table_states(spark, table, today) == latest_states


def test_a_mark_behind_the_events_tables_window_refolds_every_key(spark, config, tmp_path):
    """A run killed between its events and state commits leaves the state's mark behind.
    When the next run comes after the window has passed, the change feed since the mark
    may be gone: the run says so and re-folds every key, and the state is exact."""
    events, table = tmp_path / "events", tmp_path / "state"
    generate_log(events, events=900, keys=20, seed=7, faults=FAULTS, days=3)
    nights = sorted(events.glob("dt=*"))
    backfill(spark, config, [nights[0]], table)
    killed = run_python("tests.killed_run", nights[1], table, "events")
    assert killed.returncode == -9, killed.stderr[-2000:]
    for aged in (table, Path(f"{table}_events"), Path(f"{table}_quarantine")):
        move_into_the_past(aged, days=10)
    spark.sparkContext._jvm.org.apache.spark.sql.delta.DeltaLog.clearCache()
    said: list[str] = []
    request = RunRequest(
        sources=[str(nights[2])], table=str(table), quarantine_table=f"{table}_quarantine"
    )

    report = run_backfill(spark, config, request, progress=said.append)

    assert any("outside the events table's retention window" in line for line in said), said
    assert report.mode == "full"
    lines = [*read_lines(nights[0]), *read_lines(nights[1]), *read_lines(nights[2])]
    assert table_states(spark, table) == reference_backfill(lines).states
