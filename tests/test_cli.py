"""The `backfill` command as a user runs it: exit codes, one-line errors, the report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.cli import build_parser, main

BACKFILL = [sys.executable, "-m", "pipelines.cli"]
ROOT = Path(__file__).resolve().parent.parent


def backfill(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [*BACKFILL, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=600
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int, text: str) -> None:
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("backfill: ") and text in lines[0]
    assert "Traceback" not in result.stderr


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
    assert_one_line_error(backfill(*args), 2, text)


def test_bad_config_values_exit_2(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("spark: [unclosed\n")
    assert_one_line_error(
        backfill("run", "--source", ".", "--table", "/tmp/t", "--config", str(broken)),
        2,
        "not valid YAML",
    )
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("quarantine:\n  max_ratio: 7\n")
    assert_one_line_error(
        backfill("run", "--source", ".", "--table", "/tmp/t", "--config", str(wrong)),
        2,
        "quarantine.max_ratio",
    )


SUBCOMMANDS = {
    "run": ["--source", "--table", "--fold", "--from", "--to", "--report", "--dry-run"],
    "generate": ["--out", "--events", "--keys", "--fold", "--format", "--garbage-rate"],
    "history": ["--table"],
    "diff": ["--table", "--from-version", "--to-version"],
    "rollback": ["--table", "--to-version"],
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


@pytest.mark.slow
def test_run_report_rerun_threshold_and_failure_exit_codes(tmp_path):
    events, table, report = tmp_path / "events", tmp_path / "state", tmp_path / "report.json"
    generated = backfill(
        "generate",
        "--out",
        str(events),
        "--events",
        "2000",
        "--keys",
        "50",
        "--garbage-rate",
        "0.05",
    )
    assert generated.returncode == 0, generated.stderr
    assert "faults:" in generated.stdout

    first = backfill(
        "run",
        "--source",
        str(events),
        "--table",
        str(table),
        "--report",
        str(report),
        "--master",
        "local[2]",
    )
    assert first.returncode == 0, first.stderr
    assert "committed" in first.stdout and "quarantined" in first.stdout
    data = json.loads(report.read_text())
    counts = data["counts"]
    assert counts["records_read"] == (
        counts["valid_unique"] + counts["duplicates_dropped"] + counts["quarantined"]
    )
    assert data["keys"]["inserted"] == 50 and data["table_version_after"] is not None

    again = backfill(
        "run",
        "--source",
        str(events),
        "--table",
        str(table),
        "--report",
        str(report),
        "--master",
        "local[2]",
        "--max-quarantine-ratio",
        "0.01",
    )
    assert again.returncode == 3
    assert "above --max-quarantine-ratio" in again.stderr.strip().splitlines()[-1]
    after = json.loads(report.read_text())
    assert after["table_version_after"] == data["table_version_after"]
    assert after["status"] == "quarantine_threshold_exceeded"

    rerun = backfill(
        "run",
        "--source",
        str(events),
        "--table",
        str(table),
        "--report",
        str(report),
        "--master",
        "local[2]",
    )
    assert rerun.returncode == 0
    rerun_data = json.loads(report.read_text())
    assert (rerun_data["keys"]["inserted"], rerun_data["keys"]["updated"]) == (0, 0)

    # A table written by something else is refused before any work: exit 1, nothing written.
    other = tmp_path / "other"
    make_other = (
        "from pipelines.session import build_session; from pipelines.config import load_config;"
        f"s = build_session(load_config()); s.range(3).write.format('delta').save('{other}')"
    )
    subprocess.run([sys.executable, "-c", make_other], check=True, cwd=ROOT, capture_output=True)
    log_files = sorted((other / "_delta_log").glob("*.json"))
    failed = backfill("run", "--source", str(events), "--table", str(other), "--master", "local[2]")
    assert failed.returncode == 1
    assert failed.stderr.strip().splitlines()[-1].startswith("backfill: ")
    assert "does not have the expected columns" in failed.stderr
    assert sorted((other / "_delta_log").glob("*.json")) == log_files


@pytest.mark.slow
def test_relative_table_paths_with_dashes_work_from_another_directory(tmp_path):
    from pipelines.generate.events import FaultRates, generate_log

    generate_log(tmp_path / "raw-events", events=300, keys=5, seed=3, faults=FaultRates())
    args = ["--source", "raw-events", "--table", "my-tables/state", "--master", "local[2]"]
    first = backfill("run", *args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    for name in ("state", "state_events", "state_quarantine"):
        assert (tmp_path / "my-tables" / name / "_delta_log").is_dir(), name
    again = backfill("run", *args, cwd=tmp_path)  # rerun: nothing new
    assert again.returncode == 0, again.stderr[-2000:]
    assert "unchanged" in again.stdout
    history = backfill(
        "history", "--table", "my-tables/state", "--master", "local[2]", cwd=tmp_path
    )
    assert history.returncode == 0 and "MERGE" in history.stdout, history.stderr[-2000:]
