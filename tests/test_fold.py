"""The balance fold: a plain function of one key's events, and the same under applyInArrow."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pandas as pd
import pyarrow as pa
from chispa import assert_df_equality

from pipelines.folds import get_fold
from pipelines.transforms.fold import SEQ_ORDER, fold_states

FOLD = get_fold("balance")
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def events_table(rows: list[tuple[str, str, int, str, str]]) -> pa.Table:
    """rows of (key, event_id, seq, op, amount)."""
    return pa.table(
        {
            "key": [r[0] for r in rows],
            "event_id": [r[1] for r in rows],
            "seq": pa.array([r[2] for r in rows], pa.int64()),
            "event_time": pa.array(
                [T0 + timedelta(hours=r[2]) for r in rows], pa.timestamp("us", tz="UTC")
            ),
            "op": [r[3] for r in rows],
            "amount": pa.array([Decimal(r[4]) for r in rows], pa.decimal128(27, 9)),
        }
    )


def fold_one(rows):
    """As the pipeline calls it: the key's events sorted by `seq`, then `event_id`."""
    return FOLD.fold_key(events_table(rows).sort_by(SEQ_ORDER)).to_pylist()[0]


def test_set_resets_and_order_is_by_seq_not_arrival():
    state = fold_one(
        [
            ("k", "e4", 4, "subtract", "0.25"),
            ("k", "e1", 1, "add", "100"),
            ("k", "e3", 3, "set", "10.5"),
            ("k", "e2", 2, "add", "7"),
        ]
    )
    assert state == {
        "key": "k",
        "balance": Decimal("10.25"),
        "event_count": 4,
        "last_seq": 4,
        "missing_seq_count": 0,
        "last_event_time": T0 + timedelta(hours=4),
    }


def test_holes_are_counted_and_no_set_starts_at_zero():
    state = fold_one([("k", "a", 2, "add", "1"), ("k", "b", 5, "subtract", "3")])
    assert (state["balance"], state["last_seq"], state["missing_seq_count"]) == (Decimal(-2), 5, 3)


def test_exact_decimals_where_floats_would_drift():
    rows = [("k", f"e{i}", i, "add", "0.1") for i in range(1, 1001)]
    rows += [("k", "big", 1001, "add", "999999999999999999.999999999")]
    assert fold_one(rows)["balance"] == Decimal("1000000000000000099.999999999")


def test_equal_seq_is_broken_by_event_id():
    rows = [("k", "b", 1, "set", "2"), ("k", "a", 1, "set", "1")]
    assert fold_one(rows)["balance"] == Decimal(2)
    assert fold_one(rows[::-1])["balance"] == Decimal(2)


def test_apply_in_arrow_equals_pandas_groupby_apply(spark):
    rng = random.Random(1)
    rows = [
        (
            f"k{rng.randrange(7)}",
            f"e{i}",
            rng.randint(1, 40),
            rng.choice(["add", "subtract", "set"]),
            str(Decimal(rng.randint(-(10**6), 10**6)).scaleb(-3)),
        )
        for i in range(600)
    ]
    table = events_table(rows)
    events_df = (
        spark.createDataFrame(table.to_pandas())
        .selectExpr("*", "'valid' AS outcome")
        .selectExpr(
            "key",
            "event_id",
            "seq",
            "event_time",
            "op",
            "CAST(amount AS decimal(27,9)) AS amount",
            "outcome",
        )
    )
    expected_pdf = pd.concat(
        FOLD.fold_key(
            pa.Table.from_pandas(group, preserve_index=False).sort_by(SEQ_ORDER)
        ).to_pandas()
        for _, group in table.to_pandas().groupby("key")
    )
    expected = spark.createDataFrame(expected_pdf, FOLD.state_schema)
    folded_df = fold_states(events_df, FOLD).select(*FOLD.state_schema.fieldNames())
    assert_df_equality(folded_df, expected, ignore_row_order=True, ignore_nullable=True)


def random_rows(rng: random.Random, keys: int, events: int) -> list[tuple[str, str, int, str, str]]:
    return [
        (
            f"k{rng.randrange(keys)}",
            f"e{i}",
            rng.randint(1, 40),
            rng.choice(["add", "subtract", "set"]),
            str(Decimal(rng.randint(-(10**6), 10**6)).scaleb(-rng.randint(0, 9))),
        )
        for i in range(events)
    ]


def per_key(rows) -> list[dict]:
    by_key: dict[str, list] = {}
    for row in rows:
        by_key.setdefault(row[0], []).append(row)
    return [fold_one(by_key[k]) for k in sorted(by_key)]


def test_folding_a_sorted_batch_of_keys_equals_folding_each_key_alone():
    rng = random.Random(3)
    for trial in range(100):
        rows = random_rows(rng, keys=rng.randint(1, 12), events=rng.randint(1, 80))
        batch = events_table(rows).sort_by([("key", "ascending"), *SEQ_ORDER])
        assert FOLD.fold_keys(batch).to_pylist() == per_key(rows), trial


def test_keys_that_run_over_many_arrow_batches_fold_whole(spark):
    """Batches of 7 rows: most keys start in one batch and end in a later one."""
    rows = random_rows(random.Random(4), keys=9, events=400)
    rows += [("hot", f"h{i}", i, "add", "1") for i in range(1, 120)]  # 17 batches of one key
    events_df = spark.createDataFrame(events_table(rows).to_pandas()).selectExpr(
        "key", "event_id", "seq", "event_time", "op", "CAST(amount AS decimal(27,9)) AS amount"
    )
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "7")
    try:
        folded = fold_states(events_df, FOLD).orderBy("key").collect()
    finally:
        spark.conf.unset("spark.sql.execution.arrow.maxRecordsPerBatch")
    assert [r.asDict() for r in folded] == [
        {
            **state,
            "last_event_time": state["last_event_time"].replace(tzinfo=None),  # as collected
            "_mode": "refold",
            "_events_folded": count,
            "_deleted": False,
        }
        for state, count in zip(
            per_key(rows),
            [len([r for r in rows if r[0] == k]) for k in sorted({r[0] for r in rows})],
            strict=True,
        )
    ]


def test_resuming_from_a_stored_state_equals_folding_the_whole_history():
    rng = random.Random(5)
    for trial in range(200):
        seqs = sorted(rng.sample(range(1, 60), rng.randint(2, 30)))
        rows = [
            (
                "k",
                f"e{trial}-{i}",
                seq,
                rng.choice(["add", "subtract", "set"]),
                str(rng.randint(-99, 99)),
            )
            for i, seq in enumerate(seqs)
        ]
        cut = rng.randint(1, len(rows) - 1)
        head, tail = events_table(rows[:cut]), events_table(rows[cut:])
        resumed = FOLD.resume(FOLD.fold_key(head), tail)
        assert resumed.to_pylist() == [fold_one(rows)]


def test_resuming_a_sorted_batch_of_keys_equals_folding_each_whole_history():
    """`resume_keys` (vectorised for balance) against the whole history folded key by key."""
    rng = random.Random(6)
    for trial in range(100):
        rows = random_rows(rng, keys=rng.randint(1, 12), events=rng.randint(2, 80))
        ordered = events_table(rows).sort_by([("key", "ascending"), *SEQ_ORDER])
        heads, tails = [], []
        for key in sorted({r[0] for r in rows}):
            history = ordered.filter(pa.compute.equal(ordered["key"], key))
            seqs = history["seq"].to_pylist()
            # resume only where every later event follows the stored last_seq
            cuts = [i for i in range(1, len(seqs)) if seqs[i] > seqs[i - 1]]
            if cuts:
                cut = rng.choice(cuts)
                heads.append(FOLD.fold_key(history.slice(0, cut)))
                tails.append(history.slice(cut))
        if not heads:
            continue
        resumed = FOLD.resume_keys(pa.concat_tables(heads), pa.concat_tables(tails))
        whole = {state["key"]: state for state in per_key(rows)}
        expected = [whole[head["key"][0].as_py()] for head in heads]
        assert resumed.to_pylist() == expected, trial
