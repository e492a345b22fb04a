"""`backfill verify` (contract section 10): every state version a run makes carries the
fingerprint of its rows; verify finds a version written, or a file edited, outside the
pipeline, and `--deep` tells a state row edited from events changed outside the pipeline and
from a run interrupted between its commits. Tampering is done by an outside writer
(`deltalake`, `pyarrow`), as a careless job would."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from pipelines.generate.log import FaultRates, generate_log
from pipelines.verify import verify
from tests.cli import assert_one_line_error, run_main, run_python
from tests.helpers import backfill, kept_fingerprint, rows_fingerprint

# No late events: each log is two nights, the second re-folding keys its conflicts touch.
FAULTS = FaultRates(duplicate=0.05, conflict=0.02, late=0.0, lost=0.01, garbage=0.03)


def check(spark, config, table: Path, *flags: str):
    """`backfill verify --table TABLE FLAGS` on the tests' session: (exit code, stdout, stderr)."""
    result = run_main("verify", "--table", str(table), *flags, spark=spark)
    return result.returncode, result.stdout, result.stderr


def nights_of(spark, config, tmp_path: Path, fold: str = "balance", days: int = 2) -> Path:
    events, table = tmp_path / "events", tmp_path / "state"
    generate_log(events, events=900, keys=30, seed=3, faults=FAULTS, days=days, fold=fold)
    for night in sorted(events.glob("dt=*")):
        backfill(spark, config, [night], table)
        found = verify(spark, config, str(table), f"{table}_events")
        assert found.verified, found.verdict()
    return table


@pytest.fixture(scope="module")
def built(spark, config, tmp_path_factory) -> Path:
    """Balance tables built night by night, each night verified; tests tamper with copies."""
    return nights_of(spark, config, tmp_path_factory.mktemp("built"))


@pytest.fixture
def tables(built: Path, tmp_path: Path) -> Path:
    """A copy of the built tables (state, events, quarantine), the state's path."""
    for made in built.parent.glob("state*"):
        shutil.copytree(made, tmp_path / made.name)
    return tmp_path / "state"


@pytest.mark.parametrize("fold", ["balance", "snapshot"])
def test_every_night_verifies_and_deep_verifies_for_both_folds(
    spark, config, tmp_path, fold, built
):
    if fold == "balance":
        table = built
    else:
        table = nights_of(spark, config.with_overrides(fold=fold), tmp_path, fold)

    code, out, err = check(spark, config, table, "--deep")

    assert code == 0, out + err
    assert out.count("\n") == 1 and "verifies" in out and "every key equals the fold" in out
    assert kept_fingerprint(spark, table) == rows_fingerprint(spark, table)
    history = run_main("history", "--table", str(table), "--json")
    versions = [json.loads(line) for line in history.stdout.splitlines()]
    assert all(v["fingerprint"] is not None for v in versions)
    assert versions[0]["fingerprint"] == kept_fingerprint(spark, table).to_json()


def test_a_maintain_and_a_rollback_keep_versions_verifiable(spark, config, tables):
    table = tables
    assert run_main("maintain", "--table", str(table), spark=spark).returncode == 0
    assert check(spark, config, table)[0] == 0
    assert (
        run_main("rollback", "--table", str(table), "--to-version", "1", spark=spark).returncode
        == 0
    )
    code, out, _ = check(spark, config, table)
    assert code == 0 and "verifies" in out


def test_a_state_row_rewritten_by_an_outside_writer_fails_naming_the_key(spark, config, tmp_path):
    table = nights_of(spark, config, tmp_path, days=2)
    before = DeltaTable(str(table)).version()
    DeltaTable(str(table)).update(predicate="key = 'acct-000004'", updates={"balance": "1.00"})

    code, out, err = check(spark, config, table)

    assert code == 1, out + err
    assert out.count("\n") == 1
    assert f"version {before + 1} (UPDATE outside the pipeline) records no fingerprint" in out
    assert f"compared with version {before}" in out
    assert "1 key differs: acct-000004 (stored {" in out and '"balance": "1.000000000"' in out
    code, out, err = check(spark, config, table, "--json")
    assert code == 1 and "does not verify" in err
    (difference,) = [json.loads(line) for line in out.splitlines()]
    assert difference["key"] == "acct-000004"
    assert difference["cause"] == "state_written_outside"
    assert str(difference["stored"]["balance"]).startswith("1.00")
    # An older version, written by the pipeline, still verifies.
    assert check(spark, config, table, "--version", str(before))[0] == 0


def test_a_state_file_edited_in_place_is_found_and_explained_key_by_key(spark, config, tables):
    table = tables
    data_file = DeltaTable(str(table)).file_uris()[0]
    rows = pq.read_table(data_file)
    at = rows.schema.get_field_index("event_count")
    edited = rows.set_column(at, "event_count", pc.add(rows.column(at), 1).cast("int64"))
    pq.write_table(edited, data_file, use_deprecated_int96_timestamps=True)
    for checksum in table.glob(f".{Path(data_file).name}.crc"):
        checksum.unlink()  # as a careless job leaves it

    code, out, err = check(spark, config, table)

    assert code == 1, out + err
    assert "files were changed outside the pipeline" in out
    assert f"state rows were edited outside the pipeline ({rows.num_rows:,} keys)" in out
    assert f"{rows.num_rows:,} keys differ" in out


def test_an_event_deleted_outside_the_pipeline_is_found_by_the_deep_check(spark, config, tmp_path):
    table = nights_of(spark, config, tmp_path, days=2)
    events = DeltaTable(f"{table}_events")
    victim = events.to_pyarrow_table(columns=["key", "event_id"]).to_pylist()[0]
    events.delete(predicate=f"event_id = '{victim['event_id']}'")

    assert check(spark, config, table)[0] == 0  # the state itself is as the pipeline wrote it
    code, out, err = check(spark, config, table, "--deep")

    assert code == 1, out + err
    assert "the events table was changed outside the pipeline, at events version" in out
    assert f"1 key differs: {victim['key']} (stored" in out


def test_a_run_killed_between_its_commits_is_named_and_the_next_run_repairs_it(
    spark, config, tmp_path
):
    events, table = tmp_path / "events", tmp_path / "state"
    generate_log(events, events=600, keys=20, seed=5, faults=FAULTS, days=2)
    first, second = sorted(events.glob("dt=*"))[:2]
    backfill(spark, config, [first], table)
    killed = run_python("tests.killed_run", second, table, "events")
    assert killed.returncode == -9, killed.stderr[-2000:]

    assert check(spark, config, table)[0] == 0
    code, out, err = check(spark, config, table, "--deep")
    assert code == 1, out + err
    assert "stored since by a run interrupted before its state commit" in out
    assert "the next run repairs it" in out

    backfill(spark, config, [second], table)
    code, out, err = check(spark, config, table, "--deep")
    assert code == 0, out + err


def test_a_bad_version_or_missing_table_is_one_line(spark, built, tmp_path):
    assert_one_line_error(
        run_main("verify", "--table", str(tmp_path / "nothing"), spark=spark),
        2,
        "is not a Delta table",
    )
    assert_one_line_error(
        run_main("verify", "--table", str(built), "--version", "99", spark=spark),
        2,
        "there is no version 99",
    )
