"""`history` and `diff` read from the Delta log with delta-rs, no JVM: on the same tables
written by Spark, they equal the Spark-based ones row for row, and the CLI prints what it
printed when it ran on Spark."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from pipelines import versions
from pipelines.demo import write_live_worker_table
from pipelines.generate.live_worker import live_worker_states
from pipelines.generate.log import FaultRates, generate_log
from pipelines.io.sources import DateWindow
from pipelines.report import format_change, format_commit, format_diff_summary, json_default
from tests.cli import run_cli as cli
from tests.helpers import backfill

ROOT = Path(__file__).resolve().parent.parent
# `backfill ARGS` in a process that fails if anything imported pyspark.
WITHOUT_SPARK = (
    "import sys\n"
    "from pipelines.cli import main\n"
    "code = main(sys.argv[1:])\n"
    "assert 'pyspark' not in sys.modules, 'pyspark was imported'\n"
    "sys.exit(code)\n"
)


def backfill_without_spark(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_SPARK, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
    )


@pytest.fixture(scope="module")
def balance_table(spark, config, tmp_path_factory):
    """0 CREATE, 1 the live worker's WRITE, 2 the backfill's MERGE, 3 RESTORE to 1, 4 the
    backfill again, 5 a key inserted by hand, 6 OPTIMIZE (no data change), 7 a manual UPDATE
    of one key."""
    root = tmp_path_factory.mktemp("balance")
    events, table = root / "events", str(root / "state")
    log = generate_log(events, events=1500, keys=40, seed=31, faults=FaultRates(garbage=0.02))
    write_live_worker_table(spark, table, live_worker_states(log.delivered, skip_rate=0.05, seed=4))
    backfill(spark, config, [events], table, full=True)
    versions.rollback(spark, table, 1, reason="rehearsal")
    backfill(spark, config, [events], table, full=True)
    spark.sql(
        f"INSERT INTO delta.`{table}` VALUES "
        "('acct-extra', 1.5, 1, 1, 0, TIMESTAMP '2026-01-09 00:00:00.000001')"
    )
    spark.sql(f"OPTIMIZE delta.`{table}`")
    spark.sql(f"UPDATE delta.`{table}` SET balance = balance * 2 WHERE key = 'acct-000003'")
    assert [c["operation"] for c in versions.history(spark, table)] == [
        "UPDATE", "OPTIMIZE", "WRITE", "MERGE", "RESTORE", "MERGE", "WRITE", "CREATE TABLE"
    ]  # fmt: skip
    return table


@pytest.fixture(scope="module")
def snapshot_table(spark, config, tmp_path_factory):
    """The snapshot fold night by night (inserts, updates, deletes; 1 to 3), then RESTORE to
    the first night (4), which brings the deleted keys back."""
    root = tmp_path_factory.mktemp("snapshot")
    events, table = root / "events", str(root / "state")
    generate_log(events, events=900, keys=30, seed=32, days=3, files_per_day=1, fold="snapshot")
    snapshot_config = config.with_overrides(fold="snapshot")
    for day in (1, 2, 3):
        night = DateWindow(date(2026, 1, day), date(2026, 1, day))
        backfill(spark, snapshot_config, [events], table, window=night)
    versions.rollback(spark, table, 1, reason="back to the first night")
    return table


def spark_diff(spark, table: str, from_version: int, to_version: int | None = None):
    table_diff = versions.diff(spark, table, from_version, to_version)
    rows = [r.asDict(recursive=True) for r in table_diff.changes.orderBy("key").collect()]
    return table_diff, rows


def assert_same_diff(spark, config, table: str, from_version: int, to_version: int) -> list:
    table_diff, rows = spark_diff(spark, table, from_version, to_version)
    logged = versions.diff_from_log(table, config.s3, from_version, to_version)
    assert table_diff.method == "change_data_feed"
    assert logged is not None
    assert logged.changes == rows
    assert logged.summary() == table_diff.summary()
    return rows


def test_balance_history_from_the_log_equals_spark_history(spark, config, balance_table):
    assert versions.history_from_log(balance_table, config.s3) == versions.history(
        spark, balance_table
    )


@pytest.mark.parametrize(
    ("from_version", "to_version"),
    [(1, 2), (2, 3), (1, 3), (2, 4), (0, 7), (3, 5), (4, 6), (5, 6), (6, 7), (5, 7)],
)
def test_balance_diff_from_the_feed_equals_spark_diff(
    spark, config, balance_table, from_version, to_version
):
    rows = assert_same_diff(spark, config, balance_table, from_version, to_version)
    if (from_version, to_version) == (1, 3):
        assert rows == []  # the RESTORE undid the backfill
    if (from_version, to_version) == (2, 3):
        assert rows and {r["change"] for r in rows} == {"update"}
    if (from_version, to_version) == (4, 6):
        assert [(r["key"], r["change"]) for r in rows] == [("acct-extra", "insert")]
    if (from_version, to_version) == (5, 6):
        assert rows == []  # OPTIMIZE changes no row


def test_snapshot_history_and_diffs_with_deletes_and_a_restore(spark, config, snapshot_table):
    assert versions.history_from_log(snapshot_table, config.s3) == versions.history(
        spark, snapshot_table
    )
    kinds = set()
    for from_version, to_version in [(1, 2), (2, 3), (1, 3), (3, 4), (2, 4), (0, 4)]:
        rows = assert_same_diff(spark, config, snapshot_table, from_version, to_version)
        kinds |= {r["change"] for r in rows}
    assert kinds == {"insert", "update", "delete"}


def test_cli_prints_what_it_printed_on_spark_and_never_imports_pyspark(
    spark, balance_table, snapshot_table
):
    for table in (balance_table, snapshot_table):
        commits = versions.history(spark, table)
        history_json = backfill_without_spark("history", "--table", table, "--json")
        assert history_json.returncode == 0, history_json.stderr
        assert history_json.stdout.splitlines() == [
            json.dumps(c, sort_keys=True, default=json_default) for c in commits
        ]
        history_text = backfill_without_spark("history", "--table", table)
        assert history_text.stdout.splitlines() == [format_commit(c) for c in commits]

    for table, from_version in ((balance_table, 2), (snapshot_table, 1)):
        table_diff, rows = spark_diff(spark, table, from_version)
        summary = format_diff_summary(table_diff.summary())
        diff_json = backfill_without_spark(
            "diff", "--table", table, "--from-version", str(from_version), "--json"
        )
        assert diff_json.returncode == 0, diff_json.stderr
        assert diff_json.stdout.splitlines() == [
            json.dumps(r, sort_keys=True, default=json_default) for r in rows
        ]
        assert diff_json.stderr.splitlines() == [summary]
        diff_text = backfill_without_spark(
            "diff", "--table", table, "--from-version", str(from_version), "--limit", "5"
        )
        assert diff_text.stdout.splitlines() == [*map(format_change, rows[:5]), summary]


def test_usage_errors_without_spark(tmp_path, balance_table):
    from tests.cli import assert_one_line_error

    (tmp_path / "a-file").write_text("x")
    for missing in (tmp_path / "nothing", tmp_path, tmp_path / "a-file"):
        assert_one_line_error(
            backfill_without_spark("history", "--table", str(missing)),
            2,
            f"{missing} is not a Delta table",
        )
    assert_one_line_error(
        backfill_without_spark("diff", "--table", balance_table, "--from-version", "9"),
        2,
        "has versions 0 to 7; there is no version 9",
    )


@pytest.fixture(scope="module")
def feed_gap_table(spark, tmp_path_factory):
    """The change feed off until version 3, on from it, off again at 5: 0 CREATE, 1 INSERT,
    2 UPDATE, 3 feed on, 4 UPDATE, 5 feed off, 6 UPDATE."""
    table = str(tmp_path_factory.mktemp("gap") / "t")
    spark.sql(
        f"CREATE TABLE delta.`{table}` (key STRING, v DECIMAL(38,9), at TIMESTAMP) USING delta "
        "TBLPROPERTIES ('backfill.measure' = 'v')"
    )
    spark.sql(
        f"INSERT INTO delta.`{table}` VALUES ('a', 1.5, TIMESTAMP '2026-01-01 10:00:00'), "
        "('b', 2, NULL), ('c', 3, TIMESTAMP '2026-01-02 00:00:00.123456')"
    )
    spark.sql(f"UPDATE delta.`{table}` SET v = v + 1 WHERE key = 'a'")
    feed = "delta.enableChangeDataFeed"
    spark.sql(f"ALTER TABLE delta.`{table}` SET TBLPROPERTIES ('{feed}' = 'true')")
    spark.sql(f"UPDATE delta.`{table}` SET v = -v, at = NULL WHERE key IN ('a', 'c')")
    spark.sql(f"ALTER TABLE delta.`{table}` SET TBLPROPERTIES ('{feed}' = 'false')")
    spark.sql(f"UPDATE delta.`{table}` SET v = 0 WHERE key = 'b'")
    return table


def test_a_range_the_feed_does_not_cover_is_left_to_spark(spark, config, feed_gap_table):
    for from_version, to_version in [(0, 2), (1, 4), (0, 6), (3, 6), (5, 6)]:
        assert versions.diff_from_log(feed_gap_table, config.s3, from_version, to_version) is None
        assert versions.diff(spark, feed_gap_table, from_version, to_version).method == "snapshots"
    rows = assert_same_diff(spark, config, feed_gap_table, 2, 4)  # versions 3 and 4: covered
    assert [(r["key"], str(r["delta"])) for r in rows] == [
        ("a", "-5.000000000"),
        ("c", "-6.000000000"),
    ]
    assert versions.history_from_log(feed_gap_table, config.s3) == versions.history(
        spark, feed_gap_table
    )


@pytest.mark.slow
def test_cli_diff_of_a_range_the_feed_does_not_cover_still_works(spark, feed_gap_table):
    table_diff, rows = spark_diff(spark, feed_gap_table, 1)
    assert table_diff.method == "snapshots" and rows
    result = cli("diff", "--table", feed_gap_table, "--from-version", "1", "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines() == [
        json.dumps(r, sort_keys=True, default=json_default) for r in rows
    ]
    assert result.stderr.strip().splitlines()[-1] == format_diff_summary(table_diff.summary())


def test_deletion_vectors_and_in_commit_timestamps(spark, config, tmp_path):
    """A table with deletion vectors: history from the log, its diff left to Spark. A table
    that turns in-commit timestamps on: history times as Spark gives them, before and after."""
    vectors = str(tmp_path / "vectors")
    spark.sql(
        f"CREATE TABLE delta.`{vectors}` (key STRING, v BIGINT) USING delta TBLPROPERTIES "
        "('delta.enableChangeDataFeed' = 'true', 'delta.enableDeletionVectors' = 'true')"
    )
    spark.sql(f"INSERT INTO delta.`{vectors}` VALUES ('a', 1), ('b', 2), ('c', 3)")
    spark.sql(f"DELETE FROM delta.`{vectors}` WHERE key = 'a'")
    assert versions.diff_from_log(vectors, config.s3, 1, 2) is None
    assert versions.history_from_log(vectors, config.s3) == versions.history(spark, vectors)

    timed = str(tmp_path / "timed")
    spark.sql(f"CREATE TABLE delta.`{timed}` (key STRING, v BIGINT) USING delta")
    spark.sql(f"INSERT INTO delta.`{timed}` VALUES ('a', 1)")
    spark.sql(
        f"ALTER TABLE delta.`{timed}` SET TBLPROPERTIES ('delta.enableInCommitTimestamps' = 'true')"
    )
    spark.sql(f"INSERT INTO delta.`{timed}` VALUES ('b', 2)")
    assert versions.history_from_log(timed, config.s3) == versions.history(spark, timed)


@pytest.mark.parametrize("which", ["balance", "snapshot"])
def test_a_runs_view_of_its_tables_is_the_same_from_delta_rs_and_from_spark(
    spark, config, balance_table, snapshot_table, monkeypatch, which
):
    """Versions, ids, columns, properties and the state's mark (through a RESTORE on both
    tables) as preflight reads them by delta-rs, and as Spark reads them when it cannot."""
    from pipelines.io import delta_log
    from pipelines.io.state_table import folded_events_version
    from pipelines.io.tables import describe

    state = balance_table if which == "balance" else snapshot_table

    times: dict[str, list[int]] = {}

    def view():
        found = {}
        for uri in (state, f"{state}_events", f"{state}_quarantine"):
            info = describe(spark, uri, "table", config.s3)
            assert info is not None
            commits = [
                {k: c.get(k) for k in ("version", "operation", "userMetadata")}
                for c in info.commit_infos()
            ]
            found[uri] = (info.version, info.table_id, info.schema, info.properties, commits)
            times[uri] = [int(c["timestamp"]) for c in info.commit_infos()]  # ms, each reader
        events_id = found[f"{state}_events"][1]
        mark = folded_events_version(
            describe(spark, state, "t", config.s3).commit_infos(), events_id
        )
        return found, mark

    by_delta_rs, mark = view()
    times_by_delta_rs = dict(times)
    monkeypatch.setattr(delta_log, "snapshot", lambda uri, s3: None)
    by_spark, spark_mark = view()
    assert by_delta_rs == by_spark
    for uri, spark_times in times.items():  # the writer's clock vs the commit file's time
        assert all(
            abs(a - b) < 5000 for a, b in zip(times_by_delta_rs[uri], spark_times, strict=True)
        )
    assert mark == spark_mark
    assert mark is not None


def test_a_history_read_after_another_writer_committed_numbers_each_commit_as_its_own(tmp_path):
    """delta-rs numbers `history()` down from the version its handle was loaded at while it
    lists later commits too; the log reader must not take one commit for another (a run once
    took a concurrent MERGE's fingerprint for its CREATE's)."""
    import pyarrow as pa
    from deltalake import DeltaTable, write_deltalake

    from pipelines.io.delta_log import numbered_history

    table = str(tmp_path / "t")
    write_deltalake(table, pa.table({"n": [0]}))
    handle = DeltaTable(table)  # loaded at version 0
    for n in (1, 2):  # another writer commits twice
        write_deltalake(table, pa.table({"n": [n]}), mode="append")

    numbered = numbered_history(handle)

    assert [c["version"] for c in numbered] == [2, 1, 0]
    assert [c["operationParameters"]["mode"] for c in numbered] == [
        "Append",
        "Append",
        "ErrorIfExists",
    ]
