"""The built-in `snapshot` fold through the whole pipeline (contract sections 7 and 8):
deletes leave the state table, come back with a later upsert, arrive late or twice; equal
JSON objects written differently are identical copies; `diff` and `history` show deletes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines import versions
from tests.helpers import backfill, table_states


@pytest.fixture(scope="module")
def snapshot_config(config):
    return config.with_overrides(fold="snapshot")


def event(
    event_id: str, key: str, seq: int, op: str, data=None, ingested: int = 1, as_text=False
) -> str:
    record = {
        "event_id": event_id,
        "key": key,
        "seq": seq,
        "event_time": f"2026-01-01T00:00:{seq % 60:02d}Z",
        "op": op,
        "ingested_at": f"2026-01-{ingested:02d}T00:00:00Z",
    }
    if data is not None:
        record["data"] = json.dumps(data) if as_text else data
    return json.dumps(record)


def write_night(root: Path, night: int, lines: list[str]) -> Path:
    day = root / "events" / f"dt=2026-02-{night:02d}"
    day.mkdir(parents=True, exist_ok=True)
    (day / "part-0.jsonl").write_text("".join(f"{line}\n" for line in lines))
    return day


def entities(spark, table: Path) -> dict[str, dict]:
    return {key: json.loads(row["data"]) for key, row in table_states(spark, table).items()}


def test_a_delete_removes_the_row_and_a_later_upsert_brings_it_back(
    spark, snapshot_config, tmp_path
):
    table = tmp_path / "state"
    first = write_night(
        tmp_path,
        1,
        [
            event("a1", "a", 1, "upsert", {"name": "Ada", "address": {"city": "Paris", "zip": 1}}),
            event("a2", "a", 2, "patch", {"address": {"zip": None, "street": "Rue"}}),
            event("b1", "b", 1, "upsert", {"name": "Bo"}),
            event("c1", "c", 1, "upsert", {"name": "Cy"}),
        ],
    )
    backfill(spark, snapshot_config, [first], table)
    assert entities(spark, table) == {
        "a": {"name": "Ada", "address": {"city": "Paris", "street": "Rue"}},
        "b": {"name": "Bo"},
        "c": {"name": "Cy"},
    }

    second = write_night(
        tmp_path,
        2,
        [event("b2", "b", 2, "delete"), event("c2", "c", 2, "delete")],
    )
    deleted = backfill(spark, snapshot_config, [second], table)
    assert set(table_states(spark, table)) == {"a"}
    assert (deleted.keys.deleted, deleted.keys.by_cause["deleted_by_event"]["keys"]) == (2, 2)
    assert deleted.keys.resumed == 2  # stored rows continued with their delete

    third = write_night(tmp_path, 3, [event("b3", "b", 3, "patch", {"back": True})])
    back = backfill(spark, snapshot_config, [third], table)
    states = table_states(spark, table)
    assert json.loads(states["b"]["data"]) == {"back": True}  # a patch applies to {}
    assert (states["b"]["event_count"], states["b"]["last_seq"]) == (3, 3)
    assert back.keys.inserted == 1
    assert back.keys.refolded == 1  # no stored row, yet a history: folded from all of it

    changes = versions.diff(spark, str(table), deleted.table_version_before).changes.collect()
    kinds = {r["key"]: r["change"] for r in changes}
    assert kinds == {"c": "delete", "b": "update"}  # b: deleted, then back with new data
    history = versions.history(spark, str(table))
    assert history[1]["operationMetrics"]["numTargetRowsDeleted"] == "2"


def test_a_late_delete_refolds_its_key_and_a_redelivered_delete_is_a_duplicate(
    spark, snapshot_config, tmp_path
):
    table = tmp_path / "state"
    first = write_night(
        tmp_path,
        1,
        [event("a1", "a", 1, "upsert", {"v": 1}), event("a3", "a", 3, "patch", {"w": 2})],
    )
    backfill(spark, snapshot_config, [first], table)
    late = write_night(tmp_path, 2, [event("a2", "a", 2, "delete", ingested=2)])

    report = backfill(spark, snapshot_config, [late], table)

    # seq 2 deletes {"v": 1}; seq 3 patches the absent entity: {"w": 2} alone.
    assert entities(spark, table) == {"a": {"w": 2}}
    assert report.keys.refolded == 1 and report.keys.resumed == 0
    # Re-delivered with junk `data`: a delete's data is not read, so still the same event.
    again = write_night(tmp_path, 3, [event("a2", "a", 2, "delete", [1], ingested=3)])
    rerun = backfill(spark, snapshot_config, [again], table)
    assert (rerun.counts.duplicates_dropped, rerun.status) == (1, "unchanged")


def test_the_same_object_written_another_way_is_an_identical_copy(spark, snapshot_config, tmp_path):
    table = tmp_path / "state"
    data = {"b": 1.50, "a": {"y": [1, 2], "x": None}}
    night = write_night(
        tmp_path,
        1,
        [
            event("e1", "k", 1, "upsert", data),
            event("e1", "k", 1, "upsert", data, ingested=2, as_text=True),
            '{"event_id":"e1","key":"k","seq":1,"event_time":"2026-01-01T00:00:01Z",'
            '"op":"upsert","data":{ "a" : {"x":null, "y":[1,2]}, "b":1.5 },'
            '"ingested_at":"2026-01-03T00:00:00Z"}',
            event("e2", "k", 2, "patch", {"a": {"x": 1}}),
            event("e2", "k", 2, "patch", {"a": {"x": 2}}, ingested=5),  # newer: it wins
        ],
    )

    report = backfill(spark, snapshot_config, [night], table)

    assert report.counts.duplicates_dropped == 2
    assert report.counts.quarantined_by_reason == {"conflicting_duplicate": 1}
    assert entities(spark, table) == {"k": {"b": 1.5, "a": {"y": [1, 2], "x": 2}}}


def test_what_a_snapshot_event_needs_is_checked_per_op(spark, snapshot_config, tmp_path):
    table = tmp_path / "state"
    night = write_night(
        tmp_path,
        1,
        [
            event("d1", "k", 1, "delete"),  # a delete needs no data
            event("u1", "k", 2, "upsert"),
            event("u2", "k", 3, "patch", [1, 2]),
            event("u3", "k", 4, "upsert", "not an object", as_text=False),
            event("u4", "k", 5, "upsert", json.dumps([1]), as_text=False),
            event("u5", "k", 6, "add", {"v": 1}),
            event("u6", "k", 7, "upsert", {"v": 1}),
        ],
    )

    report = backfill(spark, snapshot_config, [night], table)

    assert report.counts.quarantined_by_reason == {
        "missing_field:data": 1,
        "bad_type:data": 3,
        "unknown_op": 1,
    }
    state = table_states(spark, table)["k"]
    assert (json.loads(state["data"]), state["event_count"], state["missing_seq_count"]) == (
        {"v": 1},
        2,
        5,
    )


def test_a_balance_events_table_is_refused_by_the_snapshot_fold(
    spark, config, snapshot_config, tmp_path
):
    from pipelines.errors import UsageError

    table = tmp_path / "state"
    balance_night = tmp_path / "balance"
    balance_night.mkdir()
    (balance_night / "e.jsonl").write_text(
        '{"event_id":"e1","key":"k","seq":1,"event_time":"2026-01-01T00:00:00Z",'
        '"op":"add","amount":1}\n'
    )
    backfill(spark, config, [balance_night], table)
    night = write_night(tmp_path, 1, [event("s1", "k", 2, "upsert", {"v": 1})])
    refused = "written by the 'balance' fold without the columns of the 'snapshot' fold"
    with pytest.raises(UsageError, match=refused):
        backfill(spark, snapshot_config, [night], table)
