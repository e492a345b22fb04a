"""`with_change_kind`: what the MERGE will do to each key, and by how much, exactly."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from chispa import assert_df_equality

from pipelines.folds import get_fold
from pipelines.transforms.reconcile import with_change_kind

FOLD = get_fold("balance")
T = datetime(2026, 1, 1)


def state(key: str, balance: str, count: int = 1):
    return (key, Decimal(balance), count, count, 0, T)


def test_insert_update_unchanged_with_exact_delta(spark):
    current_df = spark.createDataFrame(
        [state("same", "1.5"), state("moved", "10.000000001"), state("recount", "3", 1)],
        FOLD.state_schema,
    )
    new_df = spark.createDataFrame(
        [
            state("same", "1.5"),
            state("moved", "-0.000000001"),
            state("recount", "3", 2),
            state("new", "7"),
        ],
        FOLD.state_schema,
    )
    expected = spark.createDataFrame(
        [
            ("same", "unchanged", None, Decimal("1.5"), Decimal("1.5"), Decimal(0)),
            (
                "moved",
                "update",
                "order_or_content",
                Decimal("10.000000001"),
                Decimal("-0.000000001"),
                Decimal("-10.000000002"),
            ),
            ("recount", "update", "missing_events", Decimal(3), Decimal(3), Decimal(0)),
            ("new", "insert", "new_key", None, Decimal(7), Decimal(7)),
        ],
        "key string, change string, cause string, measure_before decimal(38,9), "
        "measure_after decimal(38,9), measure_delta decimal(38,9)",
    )
    actual = with_change_kind(new_df, current_df, FOLD).drop("hash_before", "hash_after")
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_no_table_yet_means_every_key_is_new(spark):
    new_df = spark.createDataFrame([state("a", "1")], FOLD.state_schema)
    row = with_change_kind(new_df, None, FOLD).first()
    assert (row["change"], row["measure_delta"]) == ("insert", Decimal(1))
