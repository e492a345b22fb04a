"""Analysts' side: history, diff, rollback, dry-run reconciliation, on real Delta tables."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from delta.tables import DeltaTable

from pipelines import versions
from pipelines.demo import write_live_worker_table
from pipelines.errors import UsageError
from pipelines.generate.live_worker import live_worker_states
from pipelines.generate.log import FaultRates, generate_log
from pipelines.io.reports import changes_path
from pipelines.run import RunRequest, run_backfill
from pipelines.transforms.diff import compare_snapshots
from tests.cli import assert_one_line_error, run_main
from tests.helpers import backfill, table_states
from tests.reference import read_lines, reference_backfill

STATE_COLUMNS = ["balance", "event_count", "last_seq", "missing_seq_count", "last_event_time"]


@pytest.fixture(scope="module")
def corrected_once(spark, config, tmp_path_factory):
    """A live worker's faulty table (version 1) corrected by a backfill (version 2), made once
    for the module: tests that only read it share it."""
    root = tmp_path_factory.mktemp("corrected")
    events, table = root / "events", root / "state"
    log = generate_log(events, events=2000, keys=60, seed=12, faults=FaultRates(garbage=0.02))
    worker = live_worker_states(log.delivered, skip_rate=0.02, seed=3)
    write_live_worker_table(spark, str(table), worker)
    report = backfill(spark, config, [events], table, full=True)
    expected = reference_backfill(read_lines(events))
    return table, events, worker, expected, report


@pytest.fixture
def corrected_table(corrected_once, tmp_path):
    """A copy of that table, with its events and quarantine tables, for a test that changes it."""
    table, *rest = corrected_once
    for suffix in ("", "_events", "_quarantine"):
        shutil.copytree(f"{table}{suffix}", tmp_path / f"state{suffix}")
    return tmp_path / "state", *rest


def changed_keys(worker: list[dict], expected) -> set[str]:
    worker_by_key = {row["key"]: {c: row[c] for c in STATE_COLUMNS} for row in worker}
    return {key for key, state in expected.states.items() if worker_by_key.get(key) != state} | {
        key for key in worker_by_key if key not in expected.states
    }


def test_history_shows_every_run_with_metadata_and_metrics(spark, corrected_once):
    table, _, _, _, report = corrected_once
    commits = versions.history(spark, str(table))
    assert [c["version"] for c in commits] == [2, 1, 0]
    merge = commits[0]
    assert merge["operation"] == "MERGE"
    assert merge["userMetadata"]["run_id"] == report.run_id
    assert merge["userMetadata"]["counts"]["records_read"] == report.counts.records_read
    assert int(merge["operationMetrics"]["numTargetRowsUpdated"]) == report.keys.updated
    assert commits[1]["userMetadata"]["writer"] == "live-worker"


def test_diff_is_exactly_the_keys_whose_state_really_changed(spark, corrected_once):
    table, _, worker, expected, report = corrected_once
    table_diff = versions.diff(spark, str(table), 1, 2)
    rows = table_diff.changes.collect()

    assert table_diff.method == "change_data_feed"
    assert {r["key"] for r in rows} == changed_keys(worker, expected)
    assert len(rows) == report.keys.updated + report.keys.inserted
    for row in rows:
        assert row["after"]["balance"] == expected.states[row["key"]]["balance"]
        before = row["before"]["balance"] if row["before"] else 0
        assert row["delta"] == row["after"]["balance"] - before
    summary = table_diff.summary()
    assert summary["keys_changed"] == len(rows)
    assert summary["total_abs_change"] == str(report.keys.total_abs_change)


def test_change_feed_and_snapshot_diffs_agree(spark, corrected_once):
    table = str(corrected_once[0])
    by_feed = versions.diff(spark, table, 1, 2).changes
    read = spark.read.format("delta")
    by_snapshots = compare_snapshots(
        read.option("versionAsOf", 1).load(table),
        read.option("versionAsOf", 2).load(table),
        STATE_COLUMNS,
        "balance",
    )
    assert by_feed.exceptAll(by_snapshots).count() == 0
    assert by_snapshots.exceptAll(by_feed).count() == 0
    backwards = versions.diff(spark, table, 2, 1)
    assert backwards.method == "snapshots"
    assert backwards.changes.count() == by_feed.count()


def test_rollback_restores_exactly_the_old_rows_and_history_says_who_and_why(
    spark, corrected_table
):
    table, _, worker, expected, _ = corrected_table
    undone, new_version = versions.rollback(spark, str(table), 1, reason="bad backfill")

    assert new_version == 3
    assert {r["key"] for r in undone.changes.collect()} == changed_keys(worker, expected)
    assert table_states(spark, table) == table_states(spark, table, 1)
    restore = versions.history(spark, str(table))[0]
    assert restore["operation"] == "RESTORE"
    assert restore["userMetadata"]["reason"] == "bad backfill"
    assert restore["userMetadata"]["rolled_back_from"] == 2
    # The diff works across the rollback: 2 -> 3 undoes everything 1 -> 2 did.
    across = versions.diff(spark, str(table), 2, 3).changes.collect()
    assert {r["key"] for r in across} == changed_keys(worker, expected)
    assert versions.diff(spark, str(table), 1, 3).changes.count() == 0


def test_rollback_to_missing_or_vacuumed_version_changes_nothing(spark, tmp_path):
    table = str(tmp_path / "t")
    spark.range(5).withColumnRenamed("id", "key").write.format("delta").save(table)
    spark.range(3).withColumnRenamed("id", "key").write.format("delta").mode("overwrite").save(
        table
    )
    with pytest.raises(UsageError, match="there is no version 7"):
        versions.rollback(spark, table, 7)
    spark.conf.set("spark.databricks.delta.retentionDurationCheck.enabled", "false")
    try:
        DeltaTable.forPath(spark, table).vacuum(0)
    finally:
        spark.conf.unset("spark.databricks.delta.retentionDurationCheck.enabled")
    before = versions.history(spark, table)
    with pytest.raises(UsageError, match="can no longer be restored"):
        versions.rollback(spark, table, 0)
    assert len(versions.history(spark, table)) == len(before)


def test_dry_run_reports_causes_writes_changes_and_commits_nothing(
    spark, config, corrected_table, tmp_path
):
    table, events, worker, expected, _ = corrected_table
    versions.rollback(spark, str(table), 1, reason="replay the backfill as a dry run")
    version = DeltaTable.forPath(spark, str(table)).history(1).first()["version"]
    report_path = str(tmp_path / "dry.json")
    request = RunRequest(
        sources=[str(events)],
        table=str(table),
        quarantine_table=str(tmp_path / "dry_quarantine"),
        dry_run=True,
        report_path=report_path,
    )
    report = run_backfill(spark, config, request, progress=lambda message: None)

    assert DeltaTable.forPath(spark, str(table)).history(1).first()["version"] == version
    assert not DeltaTable.isDeltaTable(spark, str(tmp_path / "dry_quarantine"))
    assert report.status == "dry_run"
    assert report.keys.updated + report.keys.inserted == len(changed_keys(worker, expected))
    causes = report.keys.by_cause
    assert sum(c["keys"] for c in causes.values()) == report.keys.updated + report.keys.inserted
    assert causes["missing_events"]["keys"] > 0  # the worker skipped events
    saved = json.loads(Path(report_path).read_text())
    assert saved["keys"]["by_cause"].keys() == causes.keys()
    lines = [
        json.loads(line)
        for part in Path(changes_path(report_path)).glob("part-*.json")
        for line in part.read_text().splitlines()
    ]
    assert {row["key"] for row in lines} == changed_keys(worker, expected)


@pytest.mark.slow
def test_notebook_runs_headless_to_the_end(spark, corrected_once, tmp_path):
    papermill = pytest.importorskip("papermill")
    table = corrected_once[0]
    papermill.execute_notebook(
        str(Path(__file__).parent.parent / "notebooks" / "diff_versions.ipynb"),
        str(tmp_path / "executed.ipynb"),
        parameters={"table": str(table), "scratch_dir": str(tmp_path / "scratch")},
        cwd=str(tmp_path),
        kernel_name="python3",
        progress_bar=False,
    )
    executed = json.loads((tmp_path / "executed.ipynb").read_text())
    outputs = [o for cell in executed["cells"] for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "".join("".join(o.get("text", "")) for o in outputs)
    assert "the rollback restores exactly the rows of version 1" in text
    # The notebook verifies both ends of its diff: the live worker's version records none.
    assert f"version 2 of {table} verifies" in text
    assert f"version 1 of {table} does not verify: version 1 (" in text
    assert any("image/png" in o.get("data", {}) for o in outputs)
    assert table_states(spark, table) == table_states(spark, table, 2)  # real table untouched


def test_cli_history_diff_rollback(spark, corrected_table):
    """`history`, `diff` and `rollback` through `main`, in this process on the tests' Spark
    session: what each prints, and the one-line error for a version that is not there."""
    table, _, worker, expected, _ = corrected_table
    history = run_main("history", "--table", str(table), "--json", spark=spark)
    assert history.returncode == 0, history.stderr
    commits = [json.loads(line) for line in history.stdout.splitlines()]
    assert [c["version"] for c in commits] == [2, 1, 0]
    assert {"version", "timestamp", "operation", "userMetadata", "operationMetrics"} <= set(
        commits[0]
    )
    # The backfill's version carries a fingerprint; the live worker's does not.
    assert commits[0]["fingerprint"]["rows"] == len(expected.states)
    assert commits[1]["fingerprint"] is None

    diff = run_main("diff", "--table", str(table), "--from-version", "1", "--json", spark=spark)
    assert diff.returncode == 0, diff.stderr
    changes = [json.loads(line) for line in diff.stdout.splitlines()]
    assert {c["key"] for c in changes} == changed_keys(worker, expected)
    assert {c["change"] for c in changes} <= {"insert", "update", "delete"}
    assert all({"key", "change", "before", "after"} <= set(c) for c in changes)

    assert_one_line_error(
        run_main("rollback", "--table", str(table), "--to-version", "9", spark=spark),
        2,
        "there is no version 9",
    )
    rolled = run_main(
        "rollback", "--table", str(table), "--to-version", "1", "--reason", "test", spark=spark
    )
    assert rolled.returncode == 0, rolled.stderr
    assert "restored" in rolled.stdout and "as version 3" in rolled.stdout
