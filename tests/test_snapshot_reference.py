"""The `snapshot` fold against the plain-Python reference (contract sections 2, 3, 7 and 8):
a generated CDC log with every fault in one run, and the same events cut into nights and
delivered in any order, end equal to the reference and to one run over everything."""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.cli import main as backfill_cli
from pipelines.generate.snapshot import DATA_STYLES, SnapshotEvent
from pipelines.report import RunReport
from tests.helpers import assert_any_nights_equal_one_run, backfill, examples, table_states
from tests.reference import canonical_json_text, read_lines, reference_backfill

HEAVY_FAULTS = [
    *("--duplicate-rate", "0.08", "--conflict-rate", "0.03", "--late-rate", "0.1"),
    *("--lost-rate", "0.02", "--disorder-rate", "0.6", "--garbage-rate", "0.06"),
]
# Every fault the snapshot generator injects, as `_generator.json` counts it.
SNAPSHOT_FAULTS = {
    "duplicate",
    "conflict",
    "late",
    "lost",
    "disordered_lines",
    "late_delete",
    "redelivered_delete",
    "rewritten_data",
    "garbage:missing_data",
    "garbage:bad_data",
}
REASONS = {
    "malformed_json",
    "missing_field:data",
    "bad_type:data",
    "bad_seq",
    "unknown_op",
    "bad_type:event_time",
    "conflicting_duplicate",
}


@pytest.fixture(scope="module")
def snapshot_config(config):
    return config.with_overrides(fold="snapshot")


def generate_snapshot_log(out: Path, *options: str) -> dict[str, Any]:
    """`backfill generate --fold snapshot` with heavy faults; returns `_generator.json`."""
    argv = ["generate", "--fold", "snapshot", "--out", str(out), *HEAVY_FAULTS, *options]
    assert backfill_cli(argv) == 0
    return json.loads((out / "_generator.json").read_text())


def snapshot_states(spark, table: Path) -> dict[str, dict[str, Any]]:
    """The state table with `data` in the reference's canonical text: equal by meaning."""
    if not (table / "_delta_log").exists():
        return {}
    return {
        key: {**row, "data": canonical_json_text(row["data"])}
        for key, row in table_states(spark, table).items()
    }


def quarantine_reasons(spark, table: Path) -> Counter:
    rows = spark.read.format("delta").load(f"{table}_quarantine").groupBy("reason").count()
    return Counter({r["reason"]: r["count"] for r in rows.collect()})


def valid_records(lines: list[str]) -> list[dict[str, Any]]:
    """The generated events' copies, garbage left out."""
    return [
        json.loads(line)
        for line in lines
        if line.startswith('{"event_id":"') and not line.startswith('{"event_id":"junk-')
    ]


def late_deletes(lines: list[str]) -> int:
    """Deletes read after a higher `seq` of their key, in the order the files are read."""
    highest: dict[str, int] = defaultdict(int)
    late = 0
    for line in lines:
        try:
            record = json.loads(line)
            key, seq, op = record["key"], int(record["seq"]), record["op"]
        except (ValueError, TypeError, KeyError):
            continue
        late += op == "delete" and seq < highest[key]
        highest[key] = max(highest[key], seq)
    return late


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> tuple[Path, dict[str, int]]:
    """A snapshot log with every fault, and what `_generator.json` says was injected."""
    events = tmp_path_factory.mktemp("snapshot") / "events"
    options = ("--events", "1200", "--keys", "20", "--seed", "5", "--days", "3")
    return events, generate_snapshot_log(events, *options)["injected"]


@pytest.fixture(scope="module")
def one_run(spark, snapshot_config, generated) -> tuple[Path, RunReport]:
    """The generated log backfilled in one run."""
    events, _ = generated
    table = events.parent / "one"
    return table, backfill(spark, snapshot_config, [events], table)


def test_the_generated_log_has_every_snapshot_fault(generated):
    events, injected = generated
    lines = read_lines(events)
    expected = reference_backfill(lines, fold="snapshot")

    assert {name for name, n in injected.items() if n > 0} >= SNAPSHOT_FAULTS
    assert late_deletes(lines) > 0
    assert set(expected.reasons) >= REASONS
    texts: dict[str, set[str]] = defaultdict(set)
    for record in valid_records(lines):
        texts[record["event_id"]].add(json.dumps(record.get("data")))
    assert any(len(written) > 1 for written in texts.values())  # written another way...
    assert expected.duplicates_dropped >= injected["rewritten_data"]  # ...identical copies
    # ...and the deleted keys have no row.
    assert 0 < len(expected.states) < len({record["key"] for record in valid_records(lines)})


def assert_matches_reference(spark, report: RunReport, table: Path, expected) -> None:
    counts = report.counts
    assert (counts.records_read, counts.valid_unique, counts.duplicates_dropped) == (
        expected.records_read,
        expected.valid_unique,
        expected.duplicates_dropped,
    )
    assert counts.quarantined_by_reason == dict(expected.reasons)
    assert quarantine_reasons(spark, table) == expected.reasons
    assert snapshot_states(spark, table) == expected.states


def test_one_run_equals_the_reference(spark, generated, one_run):
    events, _ = generated
    table, report = one_run
    assert_matches_reference(
        spark, report, table, reference_backfill(read_lines(events), fold="snapshot")
    )


def test_one_run_over_parquet_equals_the_reference(spark, snapshot_config, tmp_path):
    """Parquet holds `data` as a string column (a string holding the object), so the source
    goes through the JSON rules; its timestamp columns cannot hold a bad time."""
    events, table = tmp_path / "events", tmp_path / "state"
    options = ("--events", "400", "--keys", "10", "--seed", "3", "--format", "parquet")
    generate_snapshot_log(events, *options)
    expected = reference_backfill(read_lines(events), fold="snapshot")
    # Parquet rows are objects, and a timestamp column holds no text that is not a time.
    assert set(expected.reasons) >= REASONS - {"malformed_json", "bad_type:event_time"}

    report = backfill(spark, snapshot_config, [events], table)

    assert_matches_reference(spark, report, table, expected)


def test_the_generated_nights_in_any_order_equal_one_run_and_the_reference(
    spark, snapshot_config, generated, one_run, tmp_path
):
    events, _ = generated
    nights = sorted(events.glob("dt=*"))
    random.Random(9).shuffle(nights)  # later days first: deletes before what they follow
    table, delivered = tmp_path / "state", []
    for night in nights:
        backfill(spark, snapshot_config, [night], table)
        delivered += read_lines(night)
        assert snapshot_states(spark, table) == (
            reference_backfill(delivered, fold="snapshot").states
        ), f"after {night.name}"

    assert snapshot_states(spark, table) == snapshot_states(spark, one_run[0])
    expected = reference_backfill(read_lines(events), fold="snapshot")
    assert quarantine_reasons(spark, table) == expected.reasons


scalars = st.one_of(
    st.integers(-5, 5),
    st.decimals(min_value=-100, max_value=100, places=2, allow_nan=False),
    st.text(alphabet='ab":{} é', max_size=3),
    st.booleans(),
    st.none(),
)
members = st.sampled_from(["x", "y", "z"])
objects = st.dictionaries(
    members, st.one_of(scalars, st.dictionaries(members, scalars, max_size=2)), max_size=3
)
KEYS = st.sampled_from(["a", "b", "c"])
GARBAGE = [
    "{",
    '{"event_id":"x"}',
    '{"event_id":"g1","key":"a","seq":1,"event_time":"2026-01-01T00:00:00Z","op":"upsert"}',
    '{"event_id":"g2","key":"a","seq":2,"event_time":"2026-01-01T00:00:00Z","op":"patch",'
    '"data":[1]}',
    '{"event_id":"g3","key":"b","seq":1,"event_time":"2026-01-01T00:00:00Z","op":"upsert",'
    '"data":"not an object"}',
]


def at(day: int, minute: int) -> datetime:
    return datetime(2026, 1, day, minute // 60, minute % 60, tzinfo=UTC)


@st.composite
def snapshot_logs(draw) -> list[str]:
    """Upserts, patches (nulls included) and deletes with late and lost seqs; conflicting
    copies, maybe of another op or key; copies re-delivered with `data` written another way;
    garbage."""
    lines = []
    for i in range(draw(st.integers(min_value=1, max_value=16))):
        op = draw(st.sampled_from(["upsert", "patch", "delete"]))
        copy = SnapshotEvent(
            event_id=f"e{i}",
            key=draw(KEYS),
            seq=draw(st.integers(min_value=1, max_value=8)),
            event_time=at(1, i),
            op=op,
            ingested_at=at(2, i),
            data=None if op == "delete" else draw(objects),
            data_style=draw(st.sampled_from(DATA_STYLES)),
        )
        lines.append(copy.to_json())
        if draw(st.integers(0, 3)) == 0:  # a conflicting copy, newer
            other_op = draw(st.sampled_from(["upsert", "patch", "delete"]))
            newer = replace(
                copy,
                key=draw(KEYS),
                op=other_op,
                data=None if other_op == "delete" else draw(objects),
                ingested_at=at(draw(st.integers(3, 9)), 0),
            )
            lines.append(newer.to_json())
        if draw(st.integers(0, 3)) == 0:  # re-delivered later, maybe written another way
            style = draw(st.sampled_from(DATA_STYLES))
            lines.append(replace(copy, data_style=style, ingested_at=at(2, 720 + i)).to_json())
    return lines + draw(st.lists(st.sampled_from(GARBAGE), max_size=2))


@settings(
    max_examples=examples(2, 20),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(lines=snapshot_logs(), data=st.data())
def test_any_split_into_nights_in_any_order_equals_one_run_and_the_reference(
    spark, snapshot_config, lines, data
):
    assert_any_nights_equal_one_run(
        spark, snapshot_config, lines, data, max_cuts=1, fold="snapshot", states=snapshot_states
    )
