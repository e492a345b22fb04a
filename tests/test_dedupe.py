"""`classify_records`: identical copies dropped, conflicting losers quarantined, by window."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from chispa import assert_df_equality

from pipelines.transforms.dedupe import classify_records

VALIDATED = (
    "source_file string, raw string, event_id string, key string, seq long, "
    "event_time timestamp, op string, amount decimal(27,9), ingested_at timestamp, reason string"
)
T0 = datetime(2026, 1, 1, 10)


def row(raw, event_id, amount="1", ingested_at=None, reason=None, source="a.jsonl"):
    return (source, raw, event_id, "k", 1, T0, "add", Decimal(amount), ingested_at, reason)


def test_outcome_of_every_copy(spark):
    validated_df = spark.createDataFrame(
        [
            row("r1", "solo"),
            # identical copies, one re-delivered later: one kept, one duplicate
            row("r2", "dup", ingested_at=datetime(2026, 1, 1, 11)),
            row("r3", "dup", ingested_at=datetime(2026, 1, 1, 12), source="b.jsonl"),
            # conflicting copies: the latest ingested_at wins, the other is quarantined
            row("r4", "conflict", amount="5", ingested_at=datetime(2026, 1, 2)),
            row("r5", "conflict", amount="9", ingested_at=datetime(2026, 1, 3)),
            # a copy without ingested_at loses to one that has it
            row("r6", "aged", amount="1"),
            row("r7", "aged", amount="2", ingested_at=datetime(2026, 1, 1)),
            # already invalid: passes through untouched
            (
                "a.jsonl",
                "junk",
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                "malformed_json",
            ),
        ],
        VALIDATED,
    )
    actual = classify_records(validated_df).select("raw", "outcome", "reason")
    expected = spark.createDataFrame(
        [
            ("r1", "valid", None),
            ("r2", "duplicate", None),
            ("r3", "valid", None),
            ("r4", "quarantined", "conflicting_duplicate"),
            ("r5", "valid", None),
            ("r6", "quarantined", "conflicting_duplicate"),
            ("r7", "valid", None),
            ("junk", "quarantined", "malformed_json"),
        ],
        "raw string, outcome string, reason string",
    )
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_conflict_with_equal_ingested_at_is_decided_by_content_not_input_order(spark):
    same_time = datetime(2026, 1, 1, 12)
    copies = [
        row("x", "e", amount="1", ingested_at=same_time),
        row("y", "e", amount="2", ingested_at=same_time),
    ]
    winners = set()
    for ordered in (copies, copies[::-1]):
        df = spark.createDataFrame(ordered, VALIDATED).repartition(2)
        winners.add(classify_records(df).filter("outcome = 'valid'").first()["raw"])
    assert len(winners) == 1
