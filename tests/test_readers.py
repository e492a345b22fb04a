"""Every table a run writes opens in readers without Spark (contract section 5): delta-rs
(the `deltalake` package) and Polars read the state at its latest and at an older version,
the events table and the quarantine, and see what the plain-Python reference computed.
Deletion vectors, which those readers cannot open, are on only when the config asks."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import polars as pl
import pytest
from deltalake import DeltaTable

from pipelines.generate.log import FaultRates, generate_log
from pipelines.io.sources import DateWindow
from tests.helpers import backfill
from tests.reference import read_lines, reference_backfill

FAULTS = FaultRates(duplicate=0.08, conflict=0.03, late=0.08, lost=0.02, disorder=0.6, garbage=0.06)
DELETION_VECTORS = "spark.databricks.delta.properties.defaults.enableDeletionVectors"
STATE_COLUMNS = ("balance", "event_count", "last_seq", "missing_seq_count", "last_event_time")


def read_states(table: DeltaTable) -> dict[str, dict]:
    return {
        row["key"]: {c: row[c] for c in STATE_COLUMNS}
        for row in table.to_pyarrow_table().to_pylist()
    }


@pytest.fixture(scope="module")
def two_nights(spark, config, tmp_path_factory):
    """A balance table after a first night (days 1-2) and a second (days 3-4)."""
    root = tmp_path_factory.mktemp("readers")
    log = generate_log(root / "events", events=3_000, keys=60, faults=FAULTS, days=4, seed=5)
    table = root / "state"
    first = backfill(spark, config, [log.out], table, DateWindow(end=date(2026, 1, 2)))
    second = backfill(spark, config, [log.out], table, DateWindow(start=date(2026, 1, 3)))
    return Path(log.out), table, first, second


def test_deltalake_reads_the_state_now_and_at_an_old_version(two_nights):
    events, table, first, second = two_nights
    state = DeltaTable(str(table))
    assert state.protocol().min_reader_version == 1  # no reader feature to refuse
    assert state.version() == second.table_version_after
    assert read_states(state) == reference_backfill(read_lines(events)).states

    first_days = [*read_lines(events / "dt=2026-01-01"), *read_lines(events / "dt=2026-01-02")]
    old = DeltaTable(str(table), version=first.table_version_after)
    assert read_states(old) == reference_backfill(first_days).states
    writers = [
        json.loads(c["userMetadata"])["writer"] for c in state.history() if "userMetadata" in c
    ]
    assert writers and set(writers) == {"backfill"}


def test_deltalake_and_polars_read_the_events_and_the_quarantine(two_nights):
    events, table, first, second = two_nights
    expected = reference_backfill(read_lines(events))
    stored = DeltaTable(f"{table}_events").to_pyarrow_table()
    assert stored.num_rows == expected.valid_unique
    assert sorted(stored["event_id"].to_pylist()) == sorted(set(stored["event_id"].to_pylist()))
    quarantine = pl.read_delta(f"{table}_quarantine")
    assert quarantine.height == first.counts.quarantined + second.counts.quarantined
    by_reason = dict(quarantine.group_by("reason").len().iter_rows())
    assert set(by_reason) == set(expected.reasons)
    first_days = [*read_lines(events / "dt=2026-01-01"), *read_lines(events / "dt=2026-01-02")]
    old = pl.read_delta(str(table), version=first.table_version_after)
    expected_then = reference_backfill(first_days).states
    assert dict(old.select("key", "last_seq").iter_rows()) == {
        key: row["last_seq"] for key, row in expected_then.items()
    }


def test_deletion_vectors_are_the_configs_choice(spark, config, tmp_path):
    """With them on, a correcting MERGE marks rows deleted instead of rewriting files, and
    delta-rs refuses the table: the trade-off the config's comment states."""
    log = generate_log(tmp_path / "events", events=400, keys=10, faults=FAULTS, days=2, seed=2)
    table = tmp_path / "state"
    spark.conf.set(DELETION_VECTORS, "true")
    try:
        backfill(spark, config, [log.out], table)
    finally:
        spark.conf.set(DELETION_VECTORS, "false")
    properties = spark.sql(f"SHOW TBLPROPERTIES delta.`{table}`").collect()
    assert {r["key"]: r["value"] for r in properties}["delta.enableDeletionVectors"] == "true"
    with pytest.raises(Exception, match="deletionVectors"):
        DeltaTable(str(table)).to_pyarrow_table()
