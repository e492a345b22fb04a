"""A concurrent commit makes Delta reject our MERGE: it retries, or fails having written nothing.

The conflict is real: a second thread commits an UPDATE to the same table while our MERGE is
computing its source (held open by a UDF that waits for the other commit), so Delta's
optimistic concurrency check rejects our first commit.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
from delta.tables import DeltaTable
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyspark.sql import functions as F
from pyspark.sql.types import BooleanType

from pipelines.config import FieldNames
from pipelines.errors import RunFailed
from pipelines.folds import get_fold
from pipelines.generate.log import FaultRates, generate_log
from pipelines.io import commits
from pipelines.io.state_table import merge_state
from pipelines.io.tables import ensure_table
from pipelines.run import ingest
from pipelines.transforms.validate import parse_events
from tests.cli import run_python, start_cli
from tests.conftest import make_test_config
from tests.helpers import SOAK, assert_every_version_verifies, backfill, table_states
from tests.reference import _validate as reference_validate
from tests.reference import read_lines, reference_backfill

ROOT = Path(__file__).resolve().parent.parent
# `make soak` (BACKFILL_SOAK=1) runs the same suite longer: more kills, more generated input.
KILL_TRIALS = int(os.environ.get("BACKFILL_KILL_TRIALS", "20" if SOAK else "2"))
HOSTILE_EXAMPLES = 60 if SOAK else 6
# Times two concurrent runs are started before a test that never saw them overlap fails.
CONCURRENT_ATTEMPTS = 3

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
    monkeypatch.setattr(commits, "MERGE_ATTEMPTS", 2)
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


def test_two_writers_creating_one_table_at_once_both_land(spark, tmp_path, reliability_figures):
    """Two writers MERGE into a table that does not exist yet, released by one barrier: both
    see no table, both try to commit version 0, and the loser retries into the table the
    winner made. Each round is a real race, so it runs until a retry was seen (nearly always
    the first round); without one the test proves nothing and fails."""
    retried = 0
    for round_ in range(5):
        uri = str(tmp_path / f"state-{round_}")
        results = _race_to_create(spark, uri, {key: _state(spark, {key: "1"}) for key in "ab"})
        assert all(isinstance(r, commits.MergeResult) for r in results), results
        assert all(r.inserted == 1 for r in results)
        rows = spark.read.format("delta").load(uri).select("key", "balance").collect()
        assert sorted((r["key"], r["balance"]) for r in rows) == [("a", 1), ("b", 1)]
        retried += sum(r.attempts - 1 for r in results)
        if retried:
            break
    assert retried > 0, "no round of five made the two creates collide"
    reliability_figures["create_races_retried"] = retried


def _race_to_create(spark, uri: str, frames: dict) -> list:
    """MERGE each frame into `uri` from its own thread, all released at once; each writer's
    `MergeResult`, or the exception it ended with."""
    for frame in frames.values():
        frame.cache().count()
    barrier = threading.Barrier(len(frames))
    outcomes: dict[str, object] = {}

    def write(name: str) -> None:
        barrier.wait()
        try:
            outcomes[name] = merge_state(spark, uri, frames[name], FOLD)
        except Exception as exc:  # the test shows it beside the other writer's outcome
            outcomes[name] = exc

    writers = [threading.Thread(target=write, args=(name,)) for name in frames]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=120)
    return [outcomes.get(name) for name in frames]


def test_a_table_left_half_made_by_a_killed_create_fails_with_the_way_out(
    spark, tmp_path, monkeypatch
):
    # What a run killed between creating the log folder and its first commit leaves behind.
    monkeypatch.setattr(commits, "MERGE_ATTEMPTS", 2)
    uri = tmp_path / "state"
    (uri / "_delta_log").mkdir(parents=True)

    with pytest.raises(RunFailed, match="remove that _delta_log and run again") as failure:
        merge_state(spark, str(uri), _state(spark, {"a": "1"}), FOLD)

    assert "DELTA_TABLE_NOT_FOUND, 2 attempts" in str(failure.value)
    assert [p.name for p in uri.iterdir()] == ["_delta_log"]
    assert list((uri / "_delta_log").iterdir()) == []


@pytest.mark.slow
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

    # A kill that came after the run ended would test nothing: some must land mid-run.
    assert kills > 0, f"none of {KILL_TRIALS} kills landed while a run was working"
    final = start_cli("run", "--source", str(events), "--table", str(table), "--master", "local[2]")
    assert final.wait(timeout=600) == 0, final.stderr.read() if final.stderr else ""
    assert table_states(spark, table) == expected.states
    _assert_committed_and_exact(spark, table, expected)
    reliability_figures["kill_trials"] = KILL_TRIALS
    reliability_figures["kills_landed"] = kills
    reliability_figures["rows_lost_after_kills"] = 0


def _run_and_kill(events: Path, table: Path, delay: float, at_merge: bool, rng) -> bool:
    """Start a run and SIGKILL it; True if it was still running when killed."""
    run = start_cli("run", "--source", str(events), "--table", str(table), "--master", "local[2]")
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


def test_fold_tasks_that_fail_their_first_attempt_are_retried_and_the_result_is_exact(
    spark, tmp_path, reliability_figures
):
    events, table, failures = tmp_path / "events", tmp_path / "state", tmp_path / "failures"
    failures.mkdir()
    generate_log(events, events=3000, keys=60, seed=8, faults=FaultRates(garbage=0.05))
    expected = reference_backfill(read_lines(events))
    run = run_python("tests.flaky_run", events, table, failures)
    assert run.returncode == 0, run.stderr[-3000:]
    injected = len(list(failures.iterdir()))
    assert injected > 0  # the fold really failed, and Spark retried those tasks
    assert table_states(spark, table) == expected.states
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["counts"]["records_read"] == expected.records_read
    assert report["counts"]["quarantined"] == expected.quarantined
    reliability_figures["fold_task_failures_injected"] = injected


# Hostile values for each field: wrong types, edge numbers, odd text, deep and huge values.
HOSTILE_VALUES = [
    "null",
    "true",
    '""',
    '"  "',
    "0",
    "-1",
    "1.5",
    "1.0",
    "2e0",
    "1e400",
    "-1e-400",
    "99999999999999999999999",
    '"NaN"',
    '"Infinity"',
    '"1e400"',
    '"0.0000000001"',
    '"12"',
    '"-0"',
    "[]",
    "{}",
    '[1, "a", null]',
    '{"nested": {"deeper": [1, 2, {"x": null}]}}',
    '"\\u00e9t\\u00e9 \\ud83d\\ude00"',
    '"2026-02-30T00:00:00Z"',
    '"2026-01-01T24:00:00"',
    '"2026-01-01T10:00:00.123456789+05:30"',
    '"2026-01-01T10:00+05:30"',
    '"2026-01-01Z"',
    '"0000-01-01"',
    '"add"',
    '"set"',
    '"x' + "y" * 2000 + '"',
    '"\\u005d]"',
    '["\\u005d", "]"]',
]
FIELDS = ("event_id", "key", "seq", "event_time", "op", "amount", "ingested_at")
BASE = {
    "event_id": '"e1"',
    "key": '"k1"',
    "seq": "3",
    "event_time": '"2026-01-01T10:00:00Z"',
    "op": '"add"',
    "amount": '"12.5"',
    "ingested_at": '"2026-01-02T00:00:00Z"',
}


@st.composite
def hostile_line(draw) -> str:
    """A record with some fields replaced, dropped or repeated, maybe truncated or wrapped."""
    parts = []
    for name in FIELDS:
        choice = draw(st.integers(0, 5))
        if choice == 0:
            continue  # field absent
        value = BASE[name] if choice < 3 else draw(st.sampled_from(HOSTILE_VALUES))
        parts.append(f'"{name}": {value}')
    if draw(st.booleans()):
        parts.insert(
            draw(st.integers(0, len(parts))), f'"extra": {draw(st.sampled_from(HOSTILE_VALUES))}'
        )
    line = "{" + ", ".join(parts) + "}"
    damage = draw(st.integers(0, 9))
    if damage == 0:
        line = line[: draw(st.integers(0, len(line)))]  # truncated
    elif damage == 1:
        line = line + draw(st.sampled_from(["}", " junk", "{}", ",", "\t", "],[1", " ]", "]"]))
    elif damage == 2:
        line = draw(st.text(max_size=40))  # any text at all
    elif damage == 3:
        line = "[" + line + "]"
    elif damage == 4:
        line = draw(st.sampled_from(["\t", " \t ", "\t\t"])) + line  # JSON whitespace first
    return line


# CI draws the same examples every run (reproducible); `make soak` draws new ones each time.
@settings(
    max_examples=HOSTILE_EXAMPLES,
    deadline=None,
    derandomize=not SOAK,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(lines=st.lists(hostile_line(), min_size=50, max_size=120))
def test_generated_hostile_records_get_the_reference_reason(spark, lines, reliability_figures):
    """Every generated record is valid or quarantined with the reason the reference gives."""
    lines = [line for line in lines if line.strip() and "\n" not in line and "\r" not in line]
    raw_df = spark.createDataFrame(
        [(f"f{i}.jsonl", line) for i, line in enumerate(lines)], "source_file string, raw string"
    )
    parsed = raw_df.transform(parse_events, FieldNames(), FOLD).select("source_file", "reason")
    actual = {r["source_file"]: r["reason"] for r in parsed.collect()}
    expected = {f"f{i}.jsonl": reference_validate(line)[1] for i, line in enumerate(lines)}
    assert len(actual) == len(lines)  # nothing dropped
    mismatches = {
        lines[int(name[1:-6])]: (actual[name], expected[name])
        for name in expected
        if actual[name] != expected[name]
    }
    assert not mismatches
    reliability_figures["hostile_records_tried"] = reliability_figures.get(
        "hostile_records_tried", 0
    ) + len(lines)


def test_hostile_files_are_read_whole_and_every_bad_record_is_quarantined(
    spark, tmp_path, reliability_figures
):
    """Invalid UTF-8, NUL bytes, binary junk, a 10 MB line, NaN/Infinity/1e400, negative and
    huge seq, empty files and directories: nothing crashes, every record is accounted for."""
    events = tmp_path / "events"
    (events / "empty_dir").mkdir(parents=True)
    (events / "empty.jsonl").write_bytes(b"")

    def record(n: int, key: bytes = b"k", seq: bytes = b"1", amount: bytes = b"1") -> bytes:
        return (
            b'{"event_id":"e%d","key":"%s","seq":%s,"event_time":"2026-01-01T00:00:00Z",'
            b'"op":"add","amount":%s}' % (n, key, seq, amount)
        )

    lines = [
        record(1),
        b"\xff\xfe" + record(2),  # bytes before the object, not UTF-8
        record(3, key=b"k\xff"),  # not UTF-8 inside a string
        record(4, key=b"k\x00"),  # a raw control character inside a string
        bytes(range(256)).replace(b"\n", b"").replace(b"\r", b""),  # binary junk
        record(5, amount=b"NaN"),
        record(6, amount=b"Infinity"),
        record(7, amount=b"1e400"),
        record(8, seq=b"-3"),
        record(9, seq=b"92233720368547758070"),
        record(10)[:-7],  # truncated
        b'{"event_id":"e11","pad":"' + b"x" * 10_000_000 + b'"}',  # 10 MB, fields missing
        b"[" * 3000 + b"]" * 3000,
        record(12, key=b"k\xc3\xa9"),  # valid UTF-8: accepted
    ]
    (events / "a.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    (events / "b.jsonl").write_bytes(b"\n\n" + record(13) + b"\n\n")  # blank lines are no records

    report = backfill(spark, make_test_config(), [events], tmp_path / "state")

    decodable = []
    for line in [*lines, record(13)]:
        try:
            decodable.append(line.decode("utf-8"))
        except UnicodeDecodeError:
            decodable.append(None)
    expected = reference_backfill([line for line in decodable if line is not None])
    expected.reasons["malformed_json"] += decodable.count(None)
    counts = report.counts
    assert counts.records_read == len(lines) + 1
    assert counts.quarantined_by_reason == dict(expected.reasons)
    assert counts.valid_unique == expected.valid_unique == 3
    assert table_states(spark, tmp_path / "state") == expected.states
    quarantine = spark.read.format("delta").load(str(tmp_path / "state_quarantine"))
    assert quarantine.count() == counts.quarantined
    reliability_figures["hostile_records_tried"] = (
        reliability_figures.get("hostile_records_tried", 0) + len(lines) + 1
    )


def test_two_backfills_on_one_table_at_once_end_equal_to_the_reference(
    spark, tmp_path, reliability_figures
):
    """Two `backfill run` processes on one table, started together: each lands (retrying its
    commit if the other won) or fails clean, and the table ends equal to the reference. The
    two must really have worked at the same time, each reading its sources before the other
    ended; a pair the OS happened to run one after the other is started again, a bounded
    number of times, and a test that never saw them overlap fails."""
    events = tmp_path / "events"
    generate_log(events, events=3000, keys=60, seed=9, faults=FaultRates(garbage=0.05))
    expected = reference_backfill(read_lines(events))
    for attempt in range(CONCURRENT_ATTEMPTS):
        table = tmp_path / f"state-{attempt}"
        outcomes = _run_at_once(events, table)
        if _worked_at_once(outcomes):
            break
    else:
        spans = [(o.began, o.ended) for o in outcomes]
        pytest.fail(f"in {CONCURRENT_ATTEMPTS} tries the two runs never overlapped: {spans}")
    for outcome in outcomes:
        # Each either lands (retrying its commit if the other won) or fails clean.
        assert outcome.code == 0 or (outcome.code == 1 and "changed under the" in outcome.stderr), (
            outcome.stderr[-2000:]
        )
    assert any(outcome.code == 0 for outcome in outcomes)
    assert table_states(spark, table) == expected.states
    _assert_committed_and_exact(spark, table, expected)
    history = DeltaTable.forPath(spark, str(table)).history().collect()
    merges = [h for h in history if h["operation"] == "MERGE"]
    updated = sum(int(h["operationMetrics"].get("numTargetRowsUpdated", "0")) for h in merges)
    assert updated == 0  # the second MERGE found every key already right
    assert_every_version_verifies(spark, table)  # a retried MERGE counted its change again
    reliability_figures["concurrent_runs"] = len(outcomes)
    reliability_figures["concurrent_runs_landed"] = sum(o.code == 0 for o in outcomes)
    reliability_figures["concurrent_pairs_started"] = attempt + 1


@dataclass
class Outcome:
    """A run's exit code and stderr; when (monotonic, seen from this process) it said it was
    reading its sources, and when it ended."""

    code: int
    stderr: str
    began: float
    ended: float


def _worked_at_once(outcomes: list[Outcome]) -> bool:
    """Every run was reading its sources before every other one ended."""
    return max(o.began for o in outcomes) < min(o.ended for o in outcomes)


def test_runs_one_after_the_other_do_not_count_as_at_once():
    first, second = Outcome(0, "", 10.0, 30.0), Outcome(0, "", 31.0, 50.0)
    assert not _worked_at_once([first, second])
    assert not _worked_at_once([first, Outcome(0, "", float("inf"), 12.0)])  # never read
    assert _worked_at_once([first, Outcome(1, "", 29.0, 45.0)])


def _run_at_once(events: Path, table: Path) -> list[Outcome]:
    runs = [
        start_cli("run", "--source", str(events), "--table", str(table), "--master", "local[2]")
        for _ in "ab"
    ]
    outcomes: list[Outcome | None] = [None, None]

    def watch(index: int, run: subprocess.Popen[str]) -> None:
        assert run.stderr is not None
        lines, began = [], float("inf")
        for line in run.stderr:  # progress lines as they come, then the one-line error if any
            lines.append(line)
            if began == float("inf") and "source(s) and validating" in line:
                began = time.monotonic()
        code = run.wait(timeout=600)
        outcomes[index] = Outcome(code, "".join(lines), began, time.monotonic())

    watchers = [threading.Thread(target=watch, args=(i, run)) for i, run in enumerate(runs)]
    for watcher in watchers:
        watcher.start()
    for watcher in watchers:
        watcher.join(timeout=660)
    assert all(outcomes), "a run did not end in time"
    return [o for o in outcomes if o is not None]


def test_a_source_file_that_vanishes_mid_run_fails_it_clean_and_the_rerun_converges(
    spark, tmp_path, monkeypatch, reliability_figures
):
    """The file is deleted after Spark listed the sources and before it read them."""
    events, table = tmp_path / "events", tmp_path / "state"
    generate_log(events, events=2000, keys=20, seed=12)
    listed = ingest.read_sources

    def list_then_delete(*args):
        df = listed(*args)
        sorted(events.rglob("*.jsonl"))[0].unlink()
        return df

    monkeypatch.setattr(ingest, "read_sources", list_then_delete)
    with pytest.raises(RunFailed, match=r"source file .*\.jsonl disappeared while the run read it"):
        backfill(spark, make_test_config(), [events], table)
    assert not DeltaTable.isDeltaTable(spark, str(table))

    monkeypatch.setattr(ingest, "read_sources", listed)
    report = backfill(spark, make_test_config(), [events], table)
    expected = reference_backfill(read_lines(events))
    assert report.counts.records_read == expected.records_read
    assert table_states(spark, table) == expected.states
    reliability_figures["vanished_files_rows_written"] = 0
