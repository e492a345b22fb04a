"""The `backfill` command as a user runs it: exit codes, one-line errors, the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from deltalake import DeltaTable

from pipelines.cli import build_parser, main
from tests import helpers
from tests.cli import assert_one_line_error, run_cli, run_main
from tests.helpers import table_states
from tests.reference import read_lines, reference_backfill


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["run", "--source", "/no/such/dir", "--table", "/tmp/t"], "does not exist"),
        (["run", "--source", "/no/such/*.jsonl", "--table", "/tmp/t"], "matches no files"),
        (
            ["run", "--source", ".", "--table", "/tmp/t", "--fold", "median"],
            "unknown fold 'median'",
        ),
        (
            ["run", "--source", ".", "--table", "/tmp/t", "--config", "/no/conf.yaml"],
            "cannot read config",
        ),
        (["run", "--source", ".", "--table", "/tmp/t", "--from", "2026-02-30"], "is not a date"),
        (
            [
                "run",
                "--source",
                ".",
                "--table",
                "/tmp/t",
                "--from",
                "2026-02-02",
                "--to",
                "2026-02-01",
            ],
            "is after",
        ),
        (["run", "--table", "/tmp/t"], "--source"),
        (
            ["run", "--source", ".", "--table", "/tmp/t", "--max-quarantine-ratio", "7"],
            "--max-quarantine-ratio 7.0: Input should be less than or equal to 1",
        ),
        (
            ["run", "--source", ".", "--table", "/tmp/t", "--shuffle-partitions", "0"],
            "--shuffle-partitions 0: Input should be greater than or equal to 1",
        ),
        (
            ["demo", "--workdir", "/tmp/never", "--shuffle-partitions", "-1"],
            "--shuffle-partitions -1",
        ),
        (["frobnicate"], "invalid choice"),
        (
            ["generate", "--out", "/tmp/x", "--events", "10", "--keys", "2", "--garbage-rate", "2"],
            "between 0 and 1",
        ),
    ],
)
def test_usage_errors_exit_2_with_one_line(args, text):
    assert_one_line_error(run_main(*args), 2, text)


def test_bad_config_values_exit_2(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("spark: [unclosed\n")
    assert_one_line_error(
        run_main("run", "--source", ".", "--table", "/tmp/t", "--config", str(broken)),
        2,
        "not valid YAML",
    )
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("quarantine:\n  max_ratio: 7\n")
    assert_one_line_error(
        run_main("run", "--source", ".", "--table", "/tmp/t", "--config", str(wrong)),
        2,
        "quarantine.max_ratio",
    )


SUBCOMMANDS = {
    "run": [
        "--source",
        "--table",
        "--fold",
        "--from",
        "--to",
        "--report",
        "--dry-run",
        "--metrics-push",
        "--metrics-file",
        "--lineage",
    ],
    "generate": ["--out", "--events", "--keys", "--fold", "--format", "--garbage-rate"],
    "history": ["--table"],
    "diff": ["--table", "--from-version", "--to-version"],
    "rollback": ["--table", "--to-version"],
    "verify": ["--table", "--version", "--deep", "--json", "--events-table"],
    "maintain": [
        "--table",
        "--events-table",
        "--quarantine",
        "--retain-days",
        "--dry-run",
        "--json",
    ],
    "redrive": [
        "--table",
        "--quarantine",
        "--reason",
        "--run-id",
        "--config",
        "--fold",
        "--dry-run",
        "--report",
        "--metrics-push",
        "--lineage",
    ],
    "demo": ["--workdir", "--events", "--keys", "--fold"],
}


def test_every_subcommand_has_help_naming_its_flags(capsys):
    (subcommands,) = [a for a in build_parser()._actions if a.dest == "command"]
    assert set(subcommands.choices) == set(SUBCOMMANDS)  # a new subcommand is listed here
    for command, flags in SUBCOMMANDS.items():
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0
        shown = capsys.readouterr().out
        assert shown.startswith(f"usage: backfill {command}")
        assert [flag for flag in flags if flag not in shown] == []


def test_run_report_rerun_threshold_and_failure_exit_codes(spark, tmp_path):
    """`generate`, then `run` three times through `main`, in this process on the tests' Spark
    session: the summary, the report file, and exit 3 over the quarantine threshold with the
    state untouched. (A whole process, its own session included, is run end to end by the
    locations test below.)"""
    events, table, report = tmp_path / "events", tmp_path / "state", tmp_path / "report.json"
    generated = run_main(
        "generate", "--out", str(events), "--events", "2000", "--keys", "50",
        "--garbage-rate", "0.05",
    )  # fmt: skip
    assert generated.returncode == 0, generated.stderr
    assert "faults:" in generated.stdout

    run = ["run", "--source", str(events), "--table", str(table), "--report", str(report)]
    first = run_main(*run, spark=spark)
    assert first.returncode == 0, first.stderr
    assert "committed" in first.stdout and "quarantined" in first.stdout
    data = json.loads(report.read_text())
    counts = data["counts"]
    assert counts["records_read"] == (
        counts["valid_unique"] + counts["duplicates_dropped"] + counts["quarantined"]
    )
    assert data["keys"]["inserted"] == 50 and data["table_version_after"] is not None

    again = run_main(*run, "--max-quarantine-ratio", "0.01", spark=spark)
    assert again.returncode == 3
    assert "above --max-quarantine-ratio" in again.stderr.strip().splitlines()[-1]
    after = json.loads(report.read_text())
    assert after["table_version_after"] == data["table_version_after"]
    assert after["status"] == "quarantine_threshold_exceeded"

    rerun = run_main(*run, spark=spark)
    assert rerun.returncode == 0
    rerun_data = json.loads(report.read_text())
    assert (rerun_data["keys"]["inserted"], rerun_data["keys"]["updated"]) == (0, 0)


@pytest.mark.slow
def test_relative_and_file_uri_locations_work_from_another_directory(spark, tmp_path, monkeypatch):
    """Every location flag, relative to the working directory or a `file://` URI, writes
    where a user expects, run and rerun as whole processes started there (a relative
    `--source` is read by the JVM from its working directory); `history`, through `main` in
    this process from the same directory, takes the same relative path."""
    from pipelines.generate.log import FaultRates, generate_log

    generate_log(tmp_path / "raw-events", events=300, keys=5, seed=3, faults=FaultRates())
    expected = reference_backfill(read_lines(tmp_path / "raw-events"))
    args = [
        "--source", "raw-events",
        "--table", "my-tables/state",
        "--quarantine", "./bad/records",
        "--events-table", f"file://{tmp_path}/stored-events",
        "--report", "reports/night.json",
        "--master", "local[2]",
    ]  # fmt: skip
    first = run_cli("run", *args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    for table in ("my-tables/state", "bad/records", "stored-events"):
        assert (tmp_path / table / "_delta_log").is_dir(), table
    assert not (tmp_path / "spark-warehouse").exists()  # nothing else in the working directory
    report = json.loads((tmp_path / "reports" / "night.json").read_text())
    assert report["table"] == str(tmp_path / "my-tables" / "state")
    assert report["quarantine_table"] == str(tmp_path / "bad" / "records")
    assert report["events_table"] == str(tmp_path / "stored-events")
    assert report["counts"]["quarantined_by_reason"] == dict(expected.reasons)
    assert table_states(spark, tmp_path / "my-tables" / "state") == expected.states
    assert DeltaTable(str(tmp_path / "bad" / "records")).to_pyarrow_table().num_rows == sum(
        expected.reasons.values()
    )
    again = run_cli("run", *args, cwd=tmp_path)  # rerun: nothing new
    assert again.returncode == 0, again.stderr[-2000:]
    assert "unchanged" in again.stdout
    monkeypatch.chdir(tmp_path)
    history = run_main("history", "--table", "my-tables/state", "--master", "local[2]", spark=spark)
    assert history.returncode == 0 and "MERGE" in history.stdout, history.stderr[-2000:]


def _bad_locations(root: Path) -> list[tuple[list[str], str]]:
    """Flags naming a place no run can write, and the words its one-line error must hold."""
    parquet = root / "parquet"
    parquet.mkdir()
    (parquet / "part-0000.parquet").write_bytes(b"PAR1")
    (root / "a-file").write_text("x")
    (root / "half" / "_delta_log").mkdir(parents=True)
    (root / "folder").mkdir()
    return [
        (["--table", "parquet"], f"state table {parquet} is not a Delta table: it holds part-0000"),
        (["--table", "t", "--quarantine", "parquet"], f"quarantine table {parquet} is not a Delta"),
        (["--table", "t", "--events-table", str(parquet)], f"events table {parquet} is not a"),
        (["--table", "a-file"], f"state table {root / 'a-file'} is a file, not a Delta table"),
        (["--table", "a-file/state"], f"cannot be written: {root / 'a-file'} is a file"),
        (["--table", "half"], "has a _delta_log with no commit"),
        (["--table", "t", "--report", "folder"], "report folder is a directory"),
        (["--table", "t", "--report", "a-file/r.json"], "report a-file/r.json cannot be written"),
    ]


def test_a_location_that_cannot_take_the_run_fails_before_spark_starts(tmp_path, monkeypatch):
    """Each bad location ends the run at once: exit 2, one line naming the path and what is
    there, before Spark starts (`run_main` fails the test if the command asks for a session;
    the source, a folder of garbage, is never read), and nothing is written anywhere, the
    working directory included."""
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "source").mkdir()
    (tmp_path / "source" / "garbage.jsonl").write_text("not json\n")
    monkeypatch.chdir(work)
    for flags, text in _bad_locations(work):
        before = sorted(work.rglob("*"))
        assert_one_line_error(run_main("run", "--source", "../source", *flags), 2, text)
        assert sorted(work.rglob("*")) == before, flags


def test_a_delta_table_of_another_fold_is_refused_before_reading(spark, config, tmp_path):
    """The state table of the snapshot fold given to a balance run: a usage error naming the
    fold that wrote it, raised before the source (which does not exist) is read."""
    from pipelines.errors import UsageError
    from pipelines.folds import get_fold
    from pipelines.io.state_table import state_properties
    from pipelines.io.tables import ensure_table

    snapshot = get_fold("snapshot")
    table = tmp_path / "state"
    ensure_table(spark, str(table), snapshot.state_schema, properties=state_properties(snapshot))
    log_files = sorted((table / "_delta_log").glob("*.json"))
    with pytest.raises(UsageError) as refused:
        helpers.backfill(spark, config, [tmp_path / "no-such-source"], table)
    assert str(refused.value) == (
        f"state table {table} is a Delta table written by the 'snapshot' fold without the "
        "columns of the 'balance' fold this run writes (balance decimal(38,9)): give another "
        "location, or the fold that wrote it"
    )
    assert sorted((table / "_delta_log").glob("*.json")) == log_files

    # Through Hadoop's file system, as for S3: a folder of Parquet files is no Delta table.
    parquet = tmp_path / "parquet"
    spark.range(3).write.parquet(str(parquet))
    with pytest.raises(UsageError, match=f"state table file://{parquet} is not a Delta table"):
        helpers.backfill(spark, config, [tmp_path / "no-such-source"], f"file://{parquet}")
