"""The whole backfill against the plain-Python reference, on generated logs with every fault."""

from __future__ import annotations

import json
from datetime import date

import pytest
from delta.tables import DeltaTable

from pipelines.errors import UsageError
from pipelines.generate.log import FaultRates, generate_log
from pipelines.io.sources import DateWindow
from tests.helpers import backfill, table_states
from tests.reference import read_lines, reference_backfill

HEAVY_FAULTS = FaultRates(
    duplicate=0.08, conflict=0.03, late=0.08, lost=0.02, disorder=0.6, garbage=0.06
)


def assert_matches_reference(spark, report, table, expected) -> None:
    counts = report.counts
    assert counts.records_read == expected.records_read
    assert counts.valid_unique == expected.valid_unique
    assert counts.duplicates_dropped == expected.duplicates_dropped
    assert counts.quarantined_by_reason == dict(expected.reasons)
    assert counts.records_read == (
        counts.valid_unique + counts.duplicates_dropped + counts.quarantined
    )
    assert table_states(spark, table) == expected.states


@pytest.mark.parametrize(
    ("data_format", "gzip_files"), [("json", False), ("json", True), ("parquet", False)]
)
def test_backfill_equals_reference_fold(spark, config, tmp_path, data_format, gzip_files):
    events = tmp_path / "events"
    generate_log(
        events,
        events=4000,
        keys=80,
        seed=3,
        faults=HEAVY_FAULTS,
        data_format=data_format,
        gzip_files=gzip_files,
    )
    expected = reference_backfill(read_lines(events))
    assert expected.duplicates_dropped and expected.reasons["conflicting_duplicate"]
    assert any(s["missing_seq_count"] for s in expected.states.values())

    report = backfill(spark, config, [events], tmp_path / "state")

    assert report.status == "committed"
    assert_matches_reference(spark, report, tmp_path / "state", expected)
    quarantine = spark.read.format("delta").load(str(tmp_path / "state_quarantine"))
    assert quarantine.count() == expected.quarantined
    assert quarantine.filter("raw IS NULL OR source_file IS NULL OR reason IS NULL").count() == 0


def test_rerun_with_same_input_changes_no_row_and_makes_no_commit(spark, config, tmp_path):
    events, table = tmp_path / "events", tmp_path / "state"
    generate_log(events, events=1500, keys=40, seed=5, faults=HEAVY_FAULTS)
    first = backfill(spark, config, [events], table)
    second = backfill(spark, config, [events], table)

    assert first.keys.inserted == 40 and first.table_version_after is not None
    assert second.keys.total == 0  # every event is already stored: no key is touched
    assert second.counts.duplicates_dropped == second.counts.records_read - (
        second.counts.quarantined
    )
    assert second.status == "unchanged" and second.quarantine_rows_added == 0
    full = backfill(spark, config, [events], table, full=True)
    assert (full.keys.inserted, full.keys.updated, full.keys.unchanged) == (0, 0, 40)
    assert full.status == "unchanged"
    assert second.table_version_after == first.table_version_after
    merge = DeltaTable.forPath(spark, str(table)).history(1).first()
    assert (merge["version"], merge["operation"]) == (first.table_version_after, "MERGE")
    assert table_states(spark, table) == table_states(spark, table, first.table_version_after)


def test_retried_window_with_the_same_txn_version_applies_once(spark, config, tmp_path):
    events, table = tmp_path / "events", tmp_path / "state"
    generate_log(events, events=600, keys=12, seed=15, faults=HEAVY_FAULTS)
    first = backfill(spark, config, [events], table, txn=("daily", 20260101))
    quarantine_version = first.quarantine_version_after
    spark.sql(f"UPDATE delta.`{table}` SET balance = 0 WHERE key = 'acct-000001'")
    edited = DeltaTable.forPath(spark, str(table)).history(1).first()["version"]

    retry = backfill(spark, config, [events], table, txn=("daily", 20260101), full=True)

    assert retry.keys.updated == 1  # it would correct the key ...
    assert retry.status == "already_applied"  # ... but that window was applied already
    assert DeltaTable.forPath(spark, str(table)).history(1).first()["version"] == edited
    assert retry.quarantine_version_after == quarantine_version
    next_day = backfill(spark, config, [events], table, txn=("daily", 20260102), full=True)
    assert next_day.status == "committed" and next_day.keys.updated == 1


def test_merge_updates_only_wrong_keys_and_leaves_others(spark, config, tmp_path):
    events, table = tmp_path / "events", tmp_path / "state"
    generate_log(events, events=800, keys=20, seed=9, faults=FaultRates())
    backfill(spark, config, [events], table)
    # Corrupt two keys and add one the sources never mention.
    wrong_keys = "('acct-000001', 'acct-000002')"
    spark.sql(f"UPDATE delta.`{table}` SET balance = balance + 1 WHERE key IN {wrong_keys}")
    spark.sql(
        f"INSERT INTO delta.`{table}` VALUES ('other', 5, 1, 1, 0, TIMESTAMP'2026-01-01 00:00:00')"
    )
    report = backfill(spark, config, [events], table, full=True)

    assert (report.keys.inserted, report.keys.updated, report.keys.unchanged) == (0, 2, 18)
    assert report.keys.total_abs_change == 2
    metrics = DeltaTable.forPath(spark, str(table)).history(1).first()["operationMetrics"]
    assert metrics["numTargetRowsUpdated"] == "2"
    assert table_states(spark, table)["other"]["balance"] == 5


def test_every_commit_carries_run_metadata_and_change_feed_is_on(spark, config, tmp_path):
    events, table = tmp_path / "events", tmp_path / "state"
    generate_log(events, events=300, keys=10, seed=1, faults=HEAVY_FAULTS)
    report = backfill(spark, config, [events], table)

    for path in (table, tmp_path / "state_events", tmp_path / "state_quarantine"):
        history = DeltaTable.forPath(spark, str(path)).history().collect()
        assert {c["operation"] for c in history} >= {"MERGE"}, path  # created, then merged
        for commit in history:
            assert commit["userMetadata"], (path, commit["version"], commit["operation"])
            metadata = json.loads(commit["userMetadata"])
            assert metadata["writer"] == "backfill" and metadata["run_id"] == report.run_id
            assert metadata["sources"] == [str(events)]
            assert metadata["counts"]["records_read"] == report.counts.records_read
            assert metadata["code_version"] == report.code_version != ""
        properties = DeltaTable.forPath(spark, str(path)).detail().first()["properties"]
        assert properties["delta.enableChangeDataFeed"] == "true"


def test_dt_window_reads_only_selected_partitions(spark, config, tmp_path):
    events, table = tmp_path / "events", tmp_path / "state"
    log = generate_log(events, events=1000, keys=20, seed=2, faults=HEAVY_FAULTS, days=4)
    selected = [
        d for d in sorted(events.glob("dt=*")) if "2026-01-02" <= d.name[3:] <= "2026-01-03"
    ]
    assert len(selected) == 2 and len(log.files) > 8
    expected = reference_backfill([line for d in selected for line in read_lines(d)])

    window = DateWindow(date(2026, 1, 2), date(2026, 1, 3))
    report = backfill(spark, config, [events], table, window=window)

    assert_matches_reference(spark, report, table, expected)


def test_window_on_unpartitioned_source_is_a_usage_error(spark, config, tmp_path):
    events = tmp_path / "events"
    generate_log(events, events=50, keys=5, seed=2, faults=FaultRates(), days=1)
    one_file = next(events.rglob("*.jsonl"))
    with pytest.raises(UsageError, match="no dt=YYYY-MM-DD partitions"):
        backfill(spark, config, [one_file], tmp_path / "state", window=DateWindow(date(2026, 1, 1)))


def test_several_sources_files_and_globs_add_up(spark, config, tmp_path):
    events, table = tmp_path / "events", tmp_path / "state"
    generate_log(events, events=1200, keys=30, seed=4, faults=HEAVY_FAULTS, days=3)
    expected = reference_backfill(read_lines(events))
    days = sorted(events.glob("dt=*"))
    later_files = sorted(f for day in days[2:] for f in day.glob("*.jsonl"))
    sources = [days[0], str(days[1] / "*.jsonl"), *later_files]

    report = backfill(spark, config, sources, table)

    assert_matches_reference(spark, report, table, expected)


def test_quarantine_threshold_writes_quarantine_but_no_state(spark, config, tmp_path):
    events, table = tmp_path / "events", tmp_path / "state"
    generate_log(events, events=500, keys=10, seed=6, faults=FaultRates(garbage=0.2))
    strict = config.with_overrides(**{"quarantine.max_ratio": 0.05})

    report = backfill(spark, strict, [events], table)

    assert report.status == "quarantine_threshold_exceeded"
    assert report.counts.quarantined_ratio > 0.05
    assert not DeltaTable.isDeltaTable(spark, str(table))
    quarantine = spark.read.format("delta").load(f"{table}_quarantine")
    assert quarantine.count() == report.counts.quarantined


def test_dry_run_commits_nothing(spark, config, tmp_path):
    events, table = tmp_path / "events", tmp_path / "state"
    generate_log(events, events=400, keys=10, seed=8, faults=HEAVY_FAULTS)
    backfill(spark, config, [events], table)
    version = DeltaTable.forPath(spark, str(table)).history(1).first()["version"]
    spark.sql(f"UPDATE delta.`{table}` SET balance = 0")

    report = backfill(spark, config, [events], table, dry_run=True, full=True)

    assert report.status == "dry_run"
    assert report.keys.updated == 10
    assert DeltaTable.forPath(spark, str(table)).history(1).first()["version"] == version + 1
