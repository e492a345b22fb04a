"""The built-in `snapshot` fold through the whole pipeline (contract sections 7 and 8):
deletes leave the state table, come back with a later upsert, arrive late or twice; equal
JSON objects written differently are identical copies; `diff` and `history` show deletes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines import versions
from tests.helpers import backfill, event_line, table_states, write_night


@pytest.fixture(scope="module")
def snapshot_config(config):
    return config.with_overrides(fold="snapshot")


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
            event_line(
                "a1", "a", 1, "upsert", data={"name": "Ada", "address": {"city": "Paris", "zip": 1}}
            ),
            event_line("a2", "a", 2, "patch", data={"address": {"zip": None, "street": "Rue"}}),
            event_line("b1", "b", 1, "upsert", data={"name": "Bo"}),
            event_line("c1", "c", 1, "upsert", data={"name": "Cy"}),
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
        [event_line("b2", "b", 2, "delete"), event_line("c2", "c", 2, "delete")],
    )
    deleted = backfill(spark, snapshot_config, [second], table)
    assert set(table_states(spark, table)) == {"a"}
    assert (deleted.keys.deleted, deleted.keys.by_cause["deleted_by_event"]["keys"]) == (2, 2)
    assert deleted.keys.resumed == 2  # stored rows continued with their delete

    third = write_night(tmp_path, 3, [event_line("b3", "b", 3, "patch", data={"back": True})])
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
        [
            event_line("a1", "a", 1, "upsert", data={"v": 1}),
            event_line("a3", "a", 3, "patch", data={"w": 2}),
        ],
    )
    backfill(spark, snapshot_config, [first], table)
    late = write_night(tmp_path, 2, [event_line("a2", "a", 2, "delete", ingested=2)])

    report = backfill(spark, snapshot_config, [late], table)

    # seq 2 deletes {"v": 1}; seq 3 patches the absent entity: {"w": 2} alone.
    assert entities(spark, table) == {"a": {"w": 2}}
    assert report.keys.refolded == 1 and report.keys.resumed == 0
    # Re-delivered with junk `data`: a delete's data is not read, so still the same event.
    again = write_night(tmp_path, 3, [event_line("a2", "a", 2, "delete", data=[1], ingested=3)])
    rerun = backfill(spark, snapshot_config, [again], table)
    assert (rerun.counts.duplicates_dropped, rerun.status) == (1, "unchanged")


def test_the_same_object_written_another_way_is_an_identical_copy(spark, snapshot_config, tmp_path):
    table = tmp_path / "state"
    data = {"b": 1.50, "a": {"y": [1, 2], "x": None}}
    night = write_night(
        tmp_path,
        1,
        [
            event_line("e1", "k", 1, "upsert", data=data),
            event_line("e1", "k", 1, "upsert", data=json.dumps(data), ingested=2),
            '{"event_id":"e1","key":"k","seq":1,"event_time":"2026-01-01T00:00:01Z",'
            '"op":"upsert","data":{ "a" : {"x":null, "y":[1,2]}, "b":1.5 },'
            '"ingested_at":"2026-01-03T00:00:00Z"}',
            event_line("e2", "k", 2, "patch", data={"a": {"x": 1}}),
            event_line("e2", "k", 2, "patch", data={"a": {"x": 2}}, ingested=5),  # newer: it wins
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
            event_line("d1", "k", 1, "delete"),  # a delete needs no data
            event_line("u1", "k", 2, "upsert"),
            event_line("u2", "k", 3, "patch", data=[1, 2]),
            event_line("u3", "k", 4, "upsert", data="not an object"),
            event_line("u4", "k", 5, "upsert", data=json.dumps([1])),
            event_line("u5", "k", 6, "add", data={"v": 1}),
            event_line("u6", "k", 7, "upsert", data={"v": 1}),
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
    night = write_night(tmp_path, 1, [event_line("s1", "k", 2, "upsert", data={"v": 1})])
    refused = "written by the 'balance' fold without the columns of the 'snapshot' fold"
    with pytest.raises(UsageError, match=refused):
        backfill(spark, snapshot_config, [night], table)
