"""`backfill demo` as the README runs it, for both built-in folds: from another directory,
with a relative work directory; the live worker's table is wrong and the demo's two runs
leave it equal to the plain-Python reference over every generated line."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli import run_cli
from tests.helpers import table_states
from tests.reference import canonical_json_text, read_lines, reference_backfill


def _states(spark, table: Path, fold: str, version: int | None = None) -> dict:
    states = table_states(spark, table, version)
    if fold == "snapshot":  # `data` compared by meaning, in the reference's canonical text
        return {k: {**row, "data": canonical_json_text(row["data"])} for k, row in states.items()}
    return states


# `make test` runs the default fold's demo from the installed wheel (test_install).
@pytest.mark.soak
@pytest.mark.parametrize("fold", ["balance", "snapshot"])
def test_the_demo_corrects_the_live_worker(spark, tmp_path, fold):
    flags = ["--events", "3000", "--keys", "80", "--days", "3", "--shuffle-partitions", "2"]
    result = run_cli(
        "demo", "--fold", fold, "--workdir", "demo", *flags, cwd=tmp_path, installed=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(": committed") == 2, result.stdout
    assert "Traceback" not in result.stderr

    table = tmp_path / "demo" / "state"
    expected = reference_backfill(read_lines(tmp_path / "demo" / "events"), fold=fold)
    assert _states(spark, table, fold) == expected.states
    live_worker = _states(spark, table, fold, version=1)
    assert live_worker != expected.states  # there was something to correct
    if fold == "snapshot":  # the log's deletes reached the table
        assert "deleted_by_event" in result.stdout
