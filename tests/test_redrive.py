"""`backfill redrive` (contract section 11): quarantined records re-read through a fixed config
or a fold that learned an op, as one run of section 7; every quarantine row kept, each
redriven one marked with its outcome; a rerun changes no table; a redrive stopped between
its commits is finished by the next. States are checked against the plain-Python reference,
and the quarantine is read back with `deltalake`."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
from deltalake import DeltaTable

from pipelines.run import store
from pipelines.verify import verify
from tests.cli import assert_one_line_error, run_main
from tests.helpers import backfill, event_line, table_states
from tests.reference import reference_backfill
from tests.test_snapshot_reference import snapshot_states

TEST_CONFIG = Path(__file__).with_name("backfill-test.yaml").resolve()
KEYS = [f"k{i}" for i in range(6)]


def write(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


def renamed(line: str, old: str, new: str) -> str:
    record = json.loads(line)
    record[new] = record.pop(old)
    return json.dumps(record)


def balance_nights(root: Path) -> tuple[Path, Path, list[str], list[str]]:
    """Two nights; on the second a producer names the amount `amt` (new events, an identical
    copy of a stored event, an older copy that conflicts with one) beside records that have
    no amount at all. (night 1, night 2, every line as the reference reads it with the
    producer's field named `amount`, the `amt` lines as written)."""
    ops = ["set", "add", "subtract", "add", "set"]
    first = [
        event_line(f"{key}-{seq}", key, seq, ops[seq - 1], amount=str(seq * 10 + i), ingested=2)
        for i, key in enumerate(KEYS)
        for seq in range(1, 6)
    ]
    good = [event_line(f"{key}-6", key, 6, "add", amount="1", ingested=3) for key in KEYS]
    producer = [
        event_line(f"{key}-{seq}", key, seq, op, amount=amount, ingested=3)
        for key in KEYS
        for seq, op, amount in ((7, "add", "2.5"), (8, "set", "100"))
    ]
    producer += [first[0], first[6].replace('"amount": "21"', '"amount": "999"')]
    producer[-1] = producer[-1].replace("2026-01-02", "2026-01-01")  # older: it loses
    no_amount = [event_line(f"{key}-9", key, 9, "add", ingested=3) for key in KEYS[:4]]
    night1 = write(root / "events" / "dt=2026-02-01" / "part-0.jsonl", first).parent
    night2 = root / "events" / "dt=2026-02-02"
    write(night2 / "part-0.jsonl", good + no_amount)
    amt_lines = [renamed(line, "amount", "amt") for line in producer]
    write(night2 / "producer-b.jsonl", amt_lines)
    return night1, night2, first + good + no_amount + producer, amt_lines


@pytest.fixture(scope="module")
def quarantined(spark, config, tmp_path_factory):
    """Tables after both nights under the default config (the `amt` records quarantined as
    `missing_field:amount`), the amt config, and the reference's lines."""
    root = tmp_path_factory.mktemp("redrive")
    night1, night2, lines, amt_lines = balance_nights(root)
    table = root / "state"
    backfill(spark, config, [night1], table)
    second = backfill(spark, config, [night2], table)
    assert second.counts.quarantined_by_reason == {"missing_field:amount": 4 + len(amt_lines)}
    amt_config = write(root / "amt.yaml", [f"extends: {TEST_CONFIG}", "fields:", "  amount: amt"])
    return table, amt_config, lines


def copy_tables(table: Path, to: Path) -> Path:
    for made in table.parent.glob(f"{table.name}*"):
        if made.is_dir():
            shutil.copytree(made, to / made.name)
    return to / table.name


def redrive(spark, table: Path, *flags: str):
    return run_main("redrive", "--table", str(table), *flags, spark=spark)


def versions(table: Path) -> dict[str, int]:
    return {name: DeltaTable(f"{table}{name}").version() for name in ("", "_events", "_quarantine")}


def outcomes(table: Path) -> Counter:
    rows = DeltaTable(f"{table}_quarantine").to_pyarrow_table().to_pylist()
    return Counter((r["reason"], r.get("redrive_outcome")) for r in rows)


def test_a_redrive_admits_what_the_fixed_config_reads_and_keeps_every_row_after_a_dry_run(
    spark, config, quarantined, tmp_path
):
    table, amt_config, lines = quarantined
    table = copy_tables(table, tmp_path)
    rows_before = DeltaTable(f"{table}_quarantine").to_pyarrow_table().num_rows
    report_file = tmp_path / "redrive.json"
    untouched = versions(table)
    dry = redrive(spark, table, "--config", str(amt_config), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "12 admitted" in dry.stdout and versions(table) == untouched

    result = redrive(
        spark,
        table,
        "--reason",
        "missing_field:amount",
        "--config",
        str(amt_config),
        "--report",
        str(report_file),
    )

    assert result.returncode == 0, result.stderr
    report = json.loads(report_file.read_text())
    # 12 new events, 1 identical copy of a stored one, 1 older conflicting copy, 4 no amount
    assert (report["redriven"], report["admitted"]) == (18, 12)
    assert (report["duplicates_dropped"], report["still_quarantined"]) == (1, 5)
    assert report["redriven"] == (
        report["admitted"] + report["duplicates_dropped"] + report["still_quarantined"]
    )
    assert report["redrive"]["by_outcome"] == {
        "admitted": 12,
        "duplicate": 1,
        "missing_field:amount": 4,
        "conflicting_duplicate": 1,
    }
    counts = report["counts"]
    assert counts["records_read"] == 18 and counts["valid_unique"] == 12
    assert report["redrive"]["quarantine_rows_marked"] == 18
    assert "18 quarantined records: 12 admitted" in result.stdout
    # Every row kept, each redriven one marked; read by an independent reader.
    assert DeltaTable(f"{table}_quarantine").to_pyarrow_table().num_rows == rows_before
    assert outcomes(table) == {
        ("missing_field:amount", "admitted"): 12,
        ("missing_field:amount", "duplicate"): 1,
        ("missing_field:amount", "missing_field:amount"): 4,
        ("missing_field:amount", "conflicting_duplicate"): 1,
    }
    marked = DeltaTable(f"{table}_quarantine").to_pyarrow_table().to_pylist()
    assert {r["redriven_by"] for r in marked} == {report["run_id"]}
    assert table_states(spark, table) == reference_backfill(lines).states
    assert verify(spark, config, str(table), deep=True).verified

    before = versions(table)
    again = redrive(spark, table, "--reason", "missing_field", "--config", str(amt_config))

    assert again.returncode == 0, again.stderr
    assert "4 quarantined records: 0 admitted, 0 duplicates, 4 still quarantined" in again.stdout
    assert versions(table) == before  # no table changed


def test_a_redrive_stopped_between_its_commits_is_finished_by_the_next(
    spark, config, quarantined, tmp_path, monkeypatch
):
    table, amt_config, lines = quarantined
    table = copy_tables(table, tmp_path)
    flags = ("--reason", "missing_field:amount", "--config", str(amt_config))
    merge_events = store.merge_events

    def commit_then_stop(*args, **kwargs):
        merge_events(*args, **kwargs)
        raise RuntimeError("the machine went away after the events commit")

    monkeypatch.setattr(store, "merge_events", commit_then_stop)
    stopped = redrive(spark, table, *flags)
    monkeypatch.undo()
    assert stopped.returncode == 1 and "went away" in stopped.stderr
    assert outcomes(table) == {("missing_field:amount", None): 18}  # no outcome recorded

    rerun = redrive(spark, table, *flags)

    assert rerun.returncode == 0, rerun.stderr
    assert outcomes(table)[("missing_field:amount", "admitted")] == 12  # what the first did
    assert outcomes(table)[("missing_field:amount", "duplicate")] == 1
    assert table_states(spark, table) == reference_backfill(lines).states
    assert verify(spark, config, str(table), deep=True).verified


def test_a_snapshot_fold_that_learned_an_op_redrives_unknown_op(spark, config, tmp_path):
    first = [event_line(f"{key}-1", key, 1, "upsert", data={"n": 1, "tag": "a"}) for key in KEYS]
    learned = [event_line(f"{key}-2", key, 2, "replace", data={"n": 2}) for key in KEYS[:3]] + [
        event_line("k5-2", "k5", 2, "rename", data={"n": 9})
    ]  # an op nobody knows yet
    patches = [event_line(f"{key}-3", key, 3, "patch", data={"m": 3}) for key in KEYS[:2]]
    night = write(tmp_path / "events" / "part-0.jsonl", first + learned + patches).parent
    table = tmp_path / "state"
    snapshot = config.with_overrides(fold="snapshot")
    assert backfill(spark, snapshot, [night], table).counts.quarantined == 4

    result = redrive(
        spark, table, "--reason", "unknown_op", "--fold", "tests.learned_fold:SnapshotWithReplace"
    )

    assert result.returncode == 0, result.stderr
    assert "4 quarantined records: 3 admitted, 0 duplicates, 1 still quarantined" in result.stdout
    as_upserts = [line.replace('"replace"', '"upsert"') for line in learned[:3]]
    expected = reference_backfill(first + as_upserts + patches, "snapshot").states
    assert snapshot_states(spark, table) == expected
    assert outcomes(table) == {("unknown_op", "admitted"): 3, ("unknown_op", "unknown_op"): 1}


def test_a_missing_quarantine_is_one_line_before_spark(tmp_path):
    missing = run_main("redrive", "--table", str(tmp_path / "none"))  # no Spark session
    assert_one_line_error(missing, 2, "nothing to redrive: there is no quarantine table at")
