"""A concurrent commit makes Delta reject our MERGE: it retries, or fails having written nothing.

The conflict is real: a second thread commits an UPDATE to the same table while our MERGE is
computing its source (held open by a UDF that waits for the other commit), so Delta's
optimistic concurrency check rejects our first commit.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path

import pytest
from delta.tables import DeltaTable
from pyspark.sql import functions as F
from pyspark.sql.types import BooleanType

from pipelines.errors import RunFailed
from pipelines.folds import get_fold
from pipelines.generate.events import FaultRates, generate_log
from pipelines.io import delta_tables
from pipelines.io.delta_tables import ensure_table, merge_state
from tests.helpers import table_states
from tests.reference import read_lines, reference_backfill

ROOT = Path(__file__).resolve().parent.parent

FOLD = get_fold("balance")


def _state(spark, balances: dict[str, str]):
    rows = [(k, Decimal(v), 1, 1, 0, None) for k, v in balances.items()]
    return spark.createDataFrame(rows, FOLD.state_schema)


def _held_open(state_df, marker: Path, conflicts: int):
    """`state_df`, held open on key `a` until the other writer has committed.

    Each evaluation of row `a` asks for the next conflicting commit (a request file) and
    waits for it (an answer file); once `conflicts` have been made it passes straight on.
    The gate is nondeterministic, so Delta materializes the source once per MERGE attempt.
    """

    def wait_for_writer(key):  # no hints: Spark would read them as a pandas UDF
        import time

        if key != "a":
            return True
        for n in range(conflicts):
            request, answer = marker / f"request-{n}", marker / f"answer-{n}"
            if answer.exists():
                continue
            request.touch()
            deadline = time.monotonic() + 60
            while not answer.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            break
        return True

    gate = F.udf(wait_for_writer, BooleanType()).asNondeterministic()
    return state_df.filter(gate("key"))


def _other_writer(spark, table: str, marker: Path, conflicts: int) -> threading.Thread:
    def run() -> None:
        import time

        for n in range(conflicts):
            request = marker / f"request-{n}"
            deadline = time.monotonic() + 60
            while not request.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            DeltaTable.forPath(spark, table).update(set={"event_count": "event_count + 0"})
            (marker / f"answer-{n}").touch()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.fixture()
def table(spark, tmp_path) -> str:
    uri = str(tmp_path / "state")
    ensure_table(spark, uri, FOLD.state_schema)
    _state(spark, {"a": "1", "b": "2"}).write.format("delta").mode("append").save(uri)
    return uri


def test_merge_retries_after_a_concurrent_commit_and_lands_whole(
    spark, table, tmp_path, reliability_figures
):
    marker = tmp_path / "marker"
    marker.mkdir()
    writer = _other_writer(spark, table, marker, conflicts=1)
    state_df = _held_open(_state(spark, {"a": "10", "c": "3"}), marker, conflicts=1)

    result = merge_state(spark, table, state_df, FOLD)
    writer.join(timeout=60)

    assert result.attempts == 2
    reliability_figures["merge_conflicts_retried"] = result.attempts - 1
    rows = {r["key"]: r["balance"] for r in spark.read.format("delta").load(table).collect()}
    assert rows == {"a": Decimal("10"), "b": Decimal("2"), "c": Decimal("3")}


def test_merge_that_keeps_conflicting_fails_and_writes_nothing(
    spark, table, tmp_path, monkeypatch, reliability_figures
):
    monkeypatch.setattr(delta_tables, "MERGE_ATTEMPTS", 2)
    marker = tmp_path / "marker"
    marker.mkdir()
    writer = _other_writer(spark, table, marker, conflicts=2)
    state_df = _held_open(_state(spark, {"a": "10"}), marker, conflicts=2)
    before = spark.read.format("delta").load(table).orderBy("key").collect()

    with pytest.raises(RunFailed, match="changed under the MERGE 2 times"):
        merge_state(spark, table, state_df, FOLD)
    writer.join(timeout=60)

    after = spark.read.format("delta").load(table).orderBy("key").collect()
    assert after == before
    operations = [r["operation"] for r in DeltaTable.forPath(spark, table).history().collect()]
    assert "MERGE" not in operations
    reliability_figures["merge_conflicts_refused_rows_written"] = 0


KILL_TRIALS = int(os.environ.get("BACKFILL_KILL_TRIALS", "4"))


def test_killed_runs_leave_a_committed_table_and_the_next_run_converges(
    spark, tmp_path, reliability_figures
):
    """SIGKILL the whole `backfill run` process group (Python and its JVM) at random moments,
    half of them right after the MERGE starts; after each kill the table is at a committed
    version whose rows are all exact, and each quarantine append is whole or absent."""
    events, table = tmp_path / "events", tmp_path / "state"
    generate_log(events, events=3000, keys=60, seed=5, faults=FaultRates(garbage=0.05))
    expected = reference_backfill(read_lines(events))
    rng = random.Random(11)
    kills = 0
    for trial in range(KILL_TRIALS):
        at_merge = trial % 2 == 1
        if _run_and_kill(events, table, rng.uniform(3, 20), at_merge, rng):
            kills += 1
        _assert_committed_and_exact(spark, table, expected)

    final = _backfill_cli("run", "--source", str(events), "--table", str(table))
    assert final.wait(timeout=600) == 0, final.stderr.read() if final.stderr else ""
    assert table_states(spark, table) == expected.states
    _assert_committed_and_exact(spark, table, expected)
    reliability_figures["kill_trials"] = KILL_TRIALS
    reliability_figures["kills_landed"] = kills
    reliability_figures["rows_lost_after_kills"] = 0


def _backfill_cli(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "pipelines.cli", *args, "--master", "local[2]"]
    return subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
        start_new_session=True,  # its own process group: the kill takes the JVM too
    )


def _run_and_kill(events: Path, table: Path, delay: float, at_merge: bool, rng) -> bool:
    """Start a run and SIGKILL it; True if it was still running when killed."""
    run = _backfill_cli("run", "--source", str(events), "--table", str(table))
    assert run.stderr is not None
    if at_merge:
        for line in run.stderr:  # progress lines, one per step
            if "merging into" in line:
                time.sleep(rng.uniform(0, 2.5))
                break
    else:
        time.sleep(delay)
    alive = run.poll() is None
    with contextlib.suppress(ProcessLookupError):
        os.killpg(run.pid, signal.SIGKILL)
    run.wait(timeout=60)
    return alive


def _assert_committed_and_exact(spark, table: Path, expected) -> None:
    """The table is absent or at a committed version holding exactly the reference rows."""
    if DeltaTable.isDeltaTable(spark, str(table)):
        states = table_states(spark, table)
        # A run commits all its keys in one MERGE: any committed version is empty or whole.
        assert states in ({}, expected.states)
    quarantine = table.parent / f"{table.name}_quarantine"
    if DeltaTable.isDeltaTable(spark, str(quarantine)):
        per_run = spark.read.format("delta").load(str(quarantine)).groupBy("run_id").count()
        assert {r["count"] for r in per_run.collect()} <= {expected.quarantined}
