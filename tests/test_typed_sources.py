"""Parquet sources with the contract's types: checked on their columns, never parsed as text,
with the reasons and the state the plain-Python reference gives for the same rows as JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.folds import get_fold
from pipelines.io.sources import DateWindow, read_sources
from pipelines.transforms.typed import typed_plan
from tests.helpers import backfill, table_states
from tests.reference import reference_backfill

# The lake's own column names, mapped in the config's `fields:`.
NAMES = {"event_id": "id", "key": "account", "seq": "n", "amount": "value"}
T0 = datetime(2026, 1, 1, 10, 0, 0, 123456, tzinfo=UTC)


def _row(event_id, key="k1", seq=1, op="add", amount=Decimal("1.5"), **other):
    return {
        "event_id": event_id,
        "key": key,
        "seq": seq,
        "event_time": other.get("event_time", T0),
        "op": op,
        "amount": amount,
        "ingested_at": other.get("ingested_at"),
    }


ROWS = [
    _row("ok-1", seq=1, amount=Decimal("100")),
    _row("ok-2", seq=3, op="subtract", amount=Decimal("0.000000001")),  # a hole at seq 2
    _row("ok-3", key="k2", seq=1, op="set", amount=Decimal("-999999999999999999.999999999")),
    _row("ok-1", seq=1, amount=Decimal("100")),  # an identical copy
    _row("conf", seq=4, amount=Decimal("1"), ingested_at=T0),
    _row("conf", seq=4, amount=Decimal("2"), ingested_at=datetime(2026, 1, 2, tzinfo=UTC)),
    _row(None),
    _row("no-key", key=None),
    _row("no-seq", seq=None),
    _row("no-time", event_time=None),
    _row("no-op", op=None),
    _row("no-amount", amount=None),
    _row(" \t", seq=5),
    _row("nbsp-key", key="\u00a0"),  # blank to Python's strip, as in the JSON path
    _row("seq-0", seq=0),
    _row("seq-neg", seq=-4),
    _row("big", amount=Decimal("1000000000000000000")),
    _row("tiny", amount=Decimal("0.0000000001")),
    _row("upper", op="ADD"),
    _row("empty-op", op=""),
    _row("early", event_time=datetime(1, 1, 1, tzinfo=UTC), seq=6),
    _row("late-max", event_time=datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC), seq=7),
]


def _write(path, rows, amount_type: pa.DataType) -> None:
    moment = pa.timestamp("us", tz="UTC")
    schema = pa.schema(
        [
            (NAMES["event_id"], pa.string()),
            (NAMES["key"], pa.string()),
            (NAMES["seq"], pa.int32()),
            ("event_time", moment),
            ("op", pa.string()),
            (NAMES["amount"], amount_type),
            ("ingested_at", moment),
        ]
    )
    renamed = [{NAMES.get(k, k): v for k, v in row.items()} for row in rows]
    if pa.types.is_string(amount_type):
        for row in renamed:
            value = row[NAMES["amount"]]
            row[NAMES["amount"]] = None if value is None else str(value)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(renamed, schema=schema), path)


def _as_json(rows) -> list[str]:
    """The rows as JSON text with the contract's names, for the reference."""

    def value(v):
        if isinstance(v, datetime):
            return v.isoformat()
        return str(v) if isinstance(v, Decimal) else v

    return [json.dumps({k: value(v) for k, v in r.items() if v is not None}) for r in rows]


@pytest.mark.parametrize(
    ("amount_type", "typed"),
    [(pa.decimal128(38, 18), True), (pa.string(), False)],
    ids=["typed", "amount-as-string"],
)
def test_parquet_rows_get_the_reference_reasons_and_state(
    spark, config, tmp_path, amount_type, typed
):
    """Typed columns are checked as columns; an amount held as a string sends the source
    through the JSON rules. Both end where the reference ends."""
    source = tmp_path / "lake" / "dt=2026-01-01" / "part-0.parquet"
    _write(source, ROWS, amount_type)
    mapped = config.with_overrides(**{f"fields.{k}": v for k, v in NAMES.items()})
    fold = get_fold("balance")
    (read,) = read_sources(spark, [str(tmp_path / "lake")], DateWindow())
    assert (typed_plan(read.columns, mapped.fields, fold) is not None) == typed

    report = backfill(spark, mapped, [tmp_path / "lake"], tmp_path / "state")
    expected = reference_backfill(_as_json(ROWS))
    assert report.counts.records_read == expected.records_read == len(ROWS)
    assert report.counts.quarantined_by_reason == dict(expected.reasons)
    assert report.counts.duplicates_dropped == expected.duplicates_dropped
    assert table_states(spark, tmp_path / "state") == expected.states
    # Every refused row is in the quarantine, as the row's JSON, timestamps to the µs.
    quarantined = spark.read.format("delta").load(str(tmp_path / "state_quarantine"))
    texts = {r["raw"] for r in quarantined.collect()}
    assert len(texts) == sum(expected.reasons.values())
    assert any('"event_time":"2026-01-01T10:00:00.123456Z"' in t for t in texts)
