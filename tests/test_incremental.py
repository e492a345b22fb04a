"""Incremental runs (contract section 7): a night reads only its own files, folds only the
keys they touch, and any split of the log into nights ends equal to one run and to the
plain-Python reference."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from delta.tables import DeltaTable
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.errors import UsageError
from pipelines.generate.log import FaultRates, generate_log
from tests.cli import run_python
from tests.helpers import (
    assert_any_nights_equal_one_run,
    backfill,
    balance_event,
    event_line,
    examples,
    table_states,
    write_night,
)
from tests.reference import read_lines, reference_backfill


def versions(spark, table: Path) -> tuple[int | None, ...]:
    return tuple(
        DeltaTable.forPath(spark, str(uri)).history(1).first()["version"]
        if DeltaTable.isDeltaTable(spark, str(uri))
        else None
        for uri in (table, f"{table}_events", f"{table}_quarantine")
    )


def test_a_late_set_refolds_its_key_and_the_others_resume(spark, config, tmp_path):
    table = tmp_path / "state"
    first = write_night(
        tmp_path,
        1,
        [
            event_line("a1", "a", 1, "add", amount="10"),
            event_line("a3", "a", 3, "add", amount="5"),
            event_line("b1", "b", 1, "add", amount="1"),
            event_line("c1", "c", 1, "add", amount="7"),
        ],
    )
    backfill(spark, config, [first], table)
    late = write_night(
        tmp_path,
        2,
        [
            event_line("a2", "a", 2, "set", amount="100"),
            event_line("b2", "b", 2, "add", amount="2"),
        ],
    )

    report = backfill(spark, config, [late], table)

    states = table_states(spark, table)
    assert states["a"]["balance"] == 105  # set 100 at seq 2, then add 5 at seq 3
    assert states["a"]["missing_seq_count"] == 0
    assert (states["b"]["balance"], states["b"]["event_count"]) == (3, 2)
    assert report.mode == "incremental"
    assert (report.keys.refolded, report.keys.resumed) == (1, 1)  # a from history, b resumed
    assert report.keys.history_events_read == 3  # a's three events; c is never read
    assert report.keys.new_events_folded == 1
    assert (report.keys.updated, report.keys.total) == (2, 2)


def test_a_conflicting_copy_nights_later_replaces_the_stored_one(spark, config, tmp_path):
    table = tmp_path / "state"
    backfill(
        spark,
        config,
        [write_night(tmp_path, 1, [event_line("e1", "a", 1, "add", amount="10")])],
        table,
    )
    backfill(
        spark,
        config,
        [write_night(tmp_path, 2, [event_line("e2", "a", 2, "add", amount="1")])],
        table,
    )
    newer = write_night(tmp_path, 3, [event_line("e1", "a", 1, "add", amount="20", ingested=9)])

    report = backfill(spark, config, [newer], table)

    assert table_states(spark, table)["a"]["balance"] == 21
    assert (report.events_replaced, report.events_inserted) == (1, 0)
    assert report.keys.refolded == 1
    quarantine = spark.read.format("delta").load(f"{table}_quarantine").collect()
    assert [(r["reason"], json.loads(r["raw"])["amount"]) for r in quarantine] == [
        ("conflicting_duplicate", "10")  # the stored copy it displaced, with its raw text
    ]
    assert "dt=2026-02-01" in quarantine[0]["source_file"]
    older = write_night(tmp_path, 4, [event_line("e1", "a", 1, "add", amount="30", ingested=5)])
    late_loser = backfill(spark, config, [older], table)
    assert late_loser.counts.quarantined_by_reason == {"conflicting_duplicate": 1}
    assert table_states(spark, table)["a"]["balance"] == 21


def test_a_key_seen_on_one_night_only_leaves_the_others_unread(spark, config, tmp_path):
    table = tmp_path / "state"
    first = write_night(
        tmp_path,
        1,
        [event_line("a1", "a", 1, "add", amount="1"), event_line("b1", "b", 1, "set", amount="2")],
    )
    backfill(spark, config, [first], table)
    before = table_states(spark, table)

    report = backfill(
        spark,
        config,
        [write_night(tmp_path, 2, [event_line("c1", "c", 1, "add", amount="3")])],
        table,
    )

    assert (report.keys.total, report.keys.inserted, report.keys.history_events_read) == (1, 1, 0)
    changed = (
        spark.read.format("delta")
        .option("readChangeFeed", "true")
        .option("startingVersion", report.table_version_after)
        .load(str(table))
        .collect()
    )
    assert [(r["key"], r["_change_type"]) for r in changed] == [("c", "insert")]
    after = table_states(spark, table)
    assert {k: after[k] for k in before} == before


def test_an_event_redelivered_weeks_later_is_a_duplicate_and_changes_nothing(
    spark, config, tmp_path
):
    table = tmp_path / "state"
    backfill(
        spark,
        config,
        [write_night(tmp_path, 1, [event_line("e1", "a", 1, "add", amount="10")])],
        table,
    )
    before = versions(spark, table)
    again = write_night(
        tmp_path, 28, [event_line("e1", "a", 1, "add", amount="10.000", ingested=28)]
    )

    report = backfill(spark, config, [again], table)

    assert (report.counts.duplicates_dropped, report.counts.valid_unique) == (1, 0)
    assert report.status == "unchanged"
    assert versions(spark, table) == before


def test_an_event_that_moves_to_another_key_deletes_the_key_it_left(spark, config, tmp_path):
    table = tmp_path / "state"
    night = write_night(
        tmp_path,
        1,
        [event_line("e1", "a", 1, "add", amount="10"), event_line("b1", "b", 1, "add", amount="1")],
    )
    backfill(spark, config, [night], table)
    moved = write_night(tmp_path, 2, [event_line("e1", "b", 2, "add", amount="10", ingested=5)])

    report = backfill(spark, config, [moved], table)

    states = table_states(spark, table)
    assert set(states) == {"b"}
    assert (states["b"]["balance"], states["b"]["event_count"]) == (11, 2)
    assert (report.keys.deleted, report.keys.updated) == (1, 1)


def test_a_rerun_of_an_old_night_changes_no_row_in_any_table(spark, config, tmp_path):
    table, events = tmp_path / "state", tmp_path / "events"
    generate_log(events, events=900, keys=15, seed=21, faults=FaultRates(garbage=0.05), days=3)
    days = sorted(events.glob("dt=*"))
    backfill(spark, config, [days[0]], table)
    backfill(spark, config, days[1:], table)  # the nights after it, in one run
    before, states = versions(spark, table), table_states(spark, table)

    rerun = backfill(spark, config, [days[0]], table)

    assert rerun.status == "unchanged" and rerun.quarantine_rows_added == 0
    assert rerun.counts.quarantined > 0  # read and rejected again, but recorded once
    assert versions(spark, table) == before
    assert table_states(spark, table) == states


def test_a_state_table_without_events_table_needs_one_full_run(spark, config, tmp_path):
    table, events = tmp_path / "state", tmp_path / "events"
    generate_log(events, events=300, keys=6, seed=2, faults=FaultRates())
    backfill(spark, config, [events], table)
    shutil.rmtree(f"{table}_events")  # as if written before the events table existed
    with pytest.raises(UsageError, match=r"has no events table .* --full"):
        backfill(spark, config, [events], table)

    report = backfill(spark, config, [events], table, full=True)

    assert report.mode == "full" and report.events_inserted == report.counts.valid_unique
    assert table_states(spark, table) == reference_backfill(read_lines(events)).states


def table_rows(spark, uri: str, columns: list[str]) -> set[tuple]:
    return {tuple(r) for r in spark.read.format("delta").load(uri).select(*columns).collect()}


@pytest.fixture(scope="module")
def two_days_and_twin(spark, config, tmp_path_factory) -> tuple[list[Path], Path]:
    """Two days of events, and the tables an uninterrupted run of each day made."""
    root = tmp_path_factory.mktemp("killed")
    events, twin = root / "events", root / "twin"
    generate_log(
        events, events=800, keys=12, seed=31, days=2, faults=FaultRates(conflict=0.05, garbage=0.05)
    )
    days = sorted(events.glob("dt=*"))[:2]
    for day in days:
        backfill(spark, config, [day], twin)
    return days, twin


@pytest.mark.slow
# Killed after the quarantine commit: in `make soak`; test_reliability kills runs at random
# points in CI, and test_verify after the events commit.
@pytest.mark.parametrize("after", [pytest.param("quarantine", marks=pytest.mark.soak), "events"])
def test_a_run_killed_between_its_commits_is_repaired_exactly(
    spark, config, tmp_path, two_days_and_twin, after
):
    days, twin = two_days_and_twin
    table = tmp_path / "state"
    backfill(spark, config, [days[0]], table)
    killed = run_python("tests.killed_run", days[1], table, after)
    assert killed.returncode == -9, killed.stderr[-2000:]

    rerun = backfill(spark, config, [days[1]], table)

    expected = reference_backfill(read_lines(days[0]) + read_lines(days[1]))
    assert table_states(spark, table) == table_states(spark, twin) == expected.states
    event_columns = ["event_id", "key", "seq", "amount", "source_file"]
    assert table_rows(spark, f"{table}_events", event_columns) == table_rows(
        spark, f"{twin}_events", event_columns
    )
    quarantine_columns = ["record_key", "reason", "raw"]
    assert table_rows(spark, f"{table}_quarantine", quarantine_columns) == table_rows(
        spark, f"{twin}_quarantine", quarantine_columns
    )
    assert spark.read.format("delta").load(f"{table}_quarantine").count() == len(
        table_rows(spark, f"{table}_quarantine", ["record_key"])
    )
    # The quarantine commits first, so the killed run had already recorded its rejects.
    assert rerun.quarantine_rows_added == 0
    stored = rerun.events_inserted + rerun.events_replaced
    assert stored == (0 if after == "events" else rerun.counts.valid_unique)


amounts = st.decimals(min_value=-(10**4), max_value=10**4, places=2, allow_nan=False).map(str)


@st.composite
def delivered_logs(draw) -> list[str]:
    """Events with late seqs, lost seqs, conflicting and re-delivered copies, and garbage."""
    lines = []
    for i in range(draw(st.integers(min_value=1, max_value=24))):
        copy = draw(balance_event(i, max_seq=10, amounts=amounts))
        lines.append(event_line(**copy))
        if draw(st.integers(0, 3)) == 0:  # a conflicting copy, newer, maybe of another key
            newer = {
                **copy,
                "amount": draw(amounts),
                "key": draw(st.sampled_from(["a", "b", "c"])),
                "ingested_at": f"2026-01-0{draw(st.integers(3, 9))}T00:00:00Z",
            }
            lines.append(event_line(**newer))
        if draw(st.integers(0, 4)) == 0:  # re-delivered as it was
            lines.append(event_line(**copy))
    return lines + draw(st.lists(st.sampled_from(["{", "nope", '{"event_id":"x"}']), max_size=2))


@settings(
    max_examples=examples(2, 25),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(lines=delivered_logs(), data=st.data())
def test_any_split_into_nights_in_any_order_equals_one_run_and_the_reference(
    spark, config, lines, data
):
    assert_any_nights_equal_one_run(spark, config, lines, data, max_cuts=3)


def test_the_mark_comes_from_a_merge_never_from_the_create_of_a_killed_run(spark, tmp_path):
    from pipelines.config import S3Config
    from pipelines.folds import get_fold
    from pipelines.io.commits import commit_metadata
    from pipelines.io.state_table import folded_events_version
    from pipelines.io.tables import describe, ensure_table

    table = str(tmp_path / "state")
    mark = {"events_table_id": "abc", "events_version": 7}
    with commit_metadata(spark, mark):  # as the state MERGE's metadata, killed after CREATE
        ensure_table(spark, table, get_fold("balance").state_schema)

    info = describe(spark, table, "state table", S3Config())
    assert info is not None
    assert folded_events_version(info.commit_infos(), "abc") is None
