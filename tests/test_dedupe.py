"""`with_dedupe_outcome`: identical copies dropped, conflicting losers quarantined, by window."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest
from chispa import assert_df_equality

from pipelines.errors import RunFailed
from pipelines.folds import get_fold
from pipelines.run.accounting import count_by_reason, count_records
from pipelines.transforms.dedupe import quarantined_records, with_dedupe_outcome

CONTENT = get_fold("balance").content_fields

PARSED = (
    "record_id long, source_file string, raw string, event_id string, key string, seq long, "
    "event_time timestamp, op string, amount decimal(27,9), ingested_at timestamp, reason string"
)
T0 = datetime(2026, 1, 1, 10)


def row(record_id, event_id, amount="1", ingested_at=None, reason=None, source="a.jsonl"):
    raw = f"r{record_id}"
    return (
        record_id,
        source,
        raw,
        event_id,
        "k",
        1,
        T0,
        "add",
        Decimal(amount),
        ingested_at,
        reason,
    )


def valid(parsed_df):
    return parsed_df.filter("reason IS NULL")


def test_outcome_of_every_copy(spark):
    parsed_df = spark.createDataFrame(
        [
            row(1, "solo"),
            # identical copies, one re-delivered later: one kept, one duplicate
            row(2, "dup", ingested_at=datetime(2026, 1, 1, 11)),
            row(3, "dup", ingested_at=datetime(2026, 1, 1, 12), source="b.jsonl"),
            # conflicting copies: the latest ingested_at wins, the other is a loser
            row(4, "conflict", amount="5", ingested_at=datetime(2026, 1, 2)),
            row(5, "conflict", amount="9", ingested_at=datetime(2026, 1, 3)),
            # a copy without ingested_at loses to one that has it
            row(6, "aged", amount="1"),
            row(7, "aged", amount="2", ingested_at=datetime(2026, 1, 1)),
        ],
        PARSED,
    )
    actual = with_dedupe_outcome(parsed_df, CONTENT).select("record_id", "outcome")
    expected = spark.createDataFrame(
        [
            (1, "valid"),
            (2, "duplicate"),
            (3, "valid"),
            (4, "conflicting_duplicate"),
            (5, "valid"),
            (6, "conflicting_duplicate"),
            (7, "valid"),
        ],
        "record_id long, outcome string",
    )
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_quarantine_holds_invalid_records_and_conflict_losers_with_their_raw_text(spark):
    parsed_df = spark.createDataFrame(
        [
            row(1, "conflict", amount="5", ingested_at=datetime(2026, 1, 2)),
            row(2, "conflict", amount="9", ingested_at=datetime(2026, 1, 3), source="b.jsonl"),
            row(3, "dup"),
            row(4, "dup"),
            (9, "c.jsonl", "junk", *[None] * 7, "malformed_json"),
        ],
        PARSED,
    )
    outcomes_df = with_dedupe_outcome(valid(parsed_df), CONTENT)
    for conflicts in (1, 10**9):  # broadcast ids, then a plain semi-join
        actual = quarantined_records(parsed_df, outcomes_df, conflicts).select(
            "source_file", "raw", "reason"
        )
        expected = spark.createDataFrame(
            [("a.jsonl", "r1", "conflicting_duplicate"), ("c.jsonl", "junk", "malformed_json")],
            "source_file string, raw string, reason string",
        )
        assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_conflict_with_equal_ingested_at_is_decided_by_content_not_input_order(spark):
    same_time = datetime(2026, 1, 1, 12)
    copies = [
        row(1, "e", amount="1", ingested_at=same_time),
        row(2, "e", amount="2", ingested_at=same_time),
    ]
    winners = set()
    for ordered in (copies, copies[::-1]):
        df = spark.createDataFrame(ordered, PARSED).repartition(2)
        winners.add(
            with_dedupe_outcome(df, CONTENT).filter("outcome = 'valid'").first()["record_id"]
        )
    assert winners == {1}  # amount 1 sorts first: the smaller content wins a tie


def test_a_copy_lost_between_parsing_and_dedupe_fails_the_accounting(spark):
    parsed_df = spark.createDataFrame(
        [row(1, "a"), row(2, "a"), row(3, "b"), (9, "c.jsonl", "junk", *[None] * 7, "bad_seq")],
        PARSED,
    )
    outcomes_df = with_dedupe_outcome(valid(parsed_df), CONTENT)
    by_reason = count_by_reason(parsed_df, "test-run")
    counts = count_records(by_reason, outcomes_df.groupBy("outcome").count().collect())
    assert (counts.records_read, counts.valid_unique, counts.duplicates_dropped) == (4, 2, 1)
    assert counts.quarantined_by_reason == {"bad_seq": 1}

    lost_one = outcomes_df.filter("record_id != 3").groupBy("outcome").count().collect()
    with pytest.raises(RunFailed, match="accounting does not balance"):
        count_records(by_reason, lost_one)
