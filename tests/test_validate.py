"""`parse_events`: each bad record gets the contract's reason; valid ones get exact types."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from chispa import assert_df_equality
from pyspark.sql.types import (
    DecimalType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from pipelines.config import FieldNames
from pipelines.folds import get_fold
from pipelines.transforms.validate import parse_events
from tests.reference import _validate as reference_validate

OPS = {"add", "subtract", "set"}
GOOD = '"event_id":"e1","key":"k1","seq":1,"event_time":"2026-01-01T10:00:00Z","op":"add"'

EXPECTED_SCHEMA = StructType(
    [
        StructField("raw", StringType(), True),
        StructField("event_id", StringType(), True),
        StructField("key", StringType(), True),
        StructField("seq", LongType(), True),
        StructField("event_time", TimestampType(), True),
        StructField("op", StringType(), True),
        StructField("amount", DecimalType(27, 9), True),
        StructField("ingested_at", TimestampType(), True),
        StructField("reason", StringType(), True),
    ]
)


def validate(spark, lines: list[str], fields: FieldNames | None = None):
    raw_df = spark.createDataFrame(
        [("f.jsonl", line) for line in lines], "source_file string, raw string"
    )
    return raw_df.transform(parse_events, fields or FieldNames(), get_fold("balance")).drop(
        "source_file"
    )


def reasons(spark, lines: list[str]) -> list[str | None]:
    rows = validate(spark, lines).select("raw", "reason").collect()
    by_raw = {r["raw"]: r["reason"] for r in rows}
    return [by_raw[line] for line in lines]


def test_valid_records_are_typed_exactly(spark):
    lines = [
        "{"
        + GOOD
        + ',"amount":123456789012345678.123456789,"ingested_at":"2026-01-01T10:00:05.5+02:00"}',
        "{" + GOOD + ',"amount":"-0.5","extra":{"ignored":[1,2]}}',
    ]
    expected = spark.createDataFrame(
        [
            (
                lines[0],
                "e1",
                "k1",
                1,
                datetime(2026, 1, 1, 10),
                "add",
                Decimal("123456789012345678.123456789"),
                datetime(2026, 1, 1, 8, 0, 5, 500000),
                None,
            ),
            (lines[1], "e1", "k1", 1, datetime(2026, 1, 1, 10), "add", Decimal("-0.5"), None, None),
        ],
        EXPECTED_SCHEMA,
    )
    assert_df_equality(
        validate(spark, lines), expected, ignore_row_order=True, ignore_nullable=True
    )


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("{" + GOOD + ',"amount":1', "malformed_json"),
        ("not json", "malformed_json"),
        ("[{" + GOOD + ',"amount":1}]', "malformed_json"),
        ("42", "malformed_json"),
        ("{" + GOOD + ',"amount":1} trailing', "malformed_json"),
        ("{" + GOOD + ',"amount":1}}', "malformed_json"),
        ("{" + GOOD + ',"amount":1}{"a":1}', "malformed_json"),
        ("{" + GOOD + ',"amount":1}]', "malformed_json"),
        ("{" + GOOD + ',"amount":1}],[{"a":1}', "malformed_json"),
        ("{" + GOOD + ',"amount":1,"tags":["a]","b"]}', None),
        ("{" + GOOD + ',"amount":1,"tags":["\\u005d]"]}', None),
        ("{" + GOOD + ',"amount":1,"tags":"\\u005d\\u005d"}],[1', "malformed_json"),
        ("{" + GOOD + ',"amount":1,"tags":"\\u005d"} ] ,{}', "malformed_json"),
        ("\t {" + GOOD + ',"amount":1}\t', None),
        ("\t[{" + GOOD + ',"amount":1}]', "malformed_json"),
        ("{" + GOOD + ',"amount":NaN}', "malformed_json"),
        ("{" + GOOD + ',"amount":1,"amount":2}', "malformed_json"),
        (
            '{"key":"k","seq":1,"event_time":"2026-01-01","op":"add","amount":1}',
            "missing_field:event_id",
        ),
        (
            '{"event_id":null,"key":"k","seq":1,"event_time":"2026-01-01","op":"add","amount":1}',
            "missing_field:event_id",
        ),
        ("{" + GOOD.replace('"op":"add"', '"op":null') + ',"amount":1}', "missing_field:op"),
        ("{" + GOOD + "}", "missing_field:amount"),
        ("{" + GOOD.replace('"e1"', '""') + ',"amount":1}', "bad_type:event_id"),
        ("{" + GOOD.replace('"e1"', "17") + ',"amount":1}', "bad_type:event_id"),
        ("{" + GOOD.replace('"k1"', '{"a":1}') + ',"amount":1}', "bad_type:key"),
        ("{" + GOOD.replace('"seq":1', '"seq":0') + ',"amount":1}', "bad_seq"),
        ("{" + GOOD.replace('"seq":1', '"seq":-4') + ',"amount":1}', "bad_seq"),
        ("{" + GOOD.replace('"seq":1', '"seq":1.5') + ',"amount":1}', "bad_seq"),
        ("{" + GOOD.replace('"seq":1', '"seq":1.0') + ',"amount":1}', "bad_seq"),
        ("{" + GOOD.replace('"seq":1', '"seq":1e0') + ',"amount":1}', "bad_seq"),
        ("{" + GOOD.replace('"seq":1', '"seq":"three"') + ',"amount":1}', "bad_seq"),
        ("{" + GOOD.replace('"seq":1', '"seq":true') + ',"amount":1}', "bad_seq"),
        (
            "{" + GOOD.replace('"seq":1', '"seq":99999999999999999999999') + ',"amount":1}',
            "bad_seq",
        ),
        (
            "{" + GOOD.replace("2026-01-01T10:00:00Z", "yesterday") + ',"amount":1}',
            "bad_type:event_time",
        ),
        (
            "{" + GOOD.replace("2026-01-01T10:00:00Z", "10:00") + ',"amount":1}',
            "bad_type:event_time",
        ),
        (
            "{" + GOOD.replace("2026-01-01T10:00:00Z", "2026-13-45T00:00:00Z") + ',"amount":1}',
            "bad_type:event_time",
        ),
        ("{" + GOOD.replace('"add"', '"multiply"') + ',"amount":1}', "unknown_op"),
        ("{" + GOOD.replace('"add"', '"ADD"') + ',"amount":1}', "unknown_op"),
        ("{" + GOOD + ',"amount":"abc"}', "bad_type:amount"),
        ("{" + GOOD + ',"amount":true}', "bad_type:amount"),
        ("{" + GOOD + ',"amount":"NaN"}', "bad_type:amount"),
        ("{" + GOOD + ',"amount":[1]}', "bad_type:amount"),
        ("{" + GOOD + ',"amount":1e400}', "amount_out_of_range"),
        ("{" + GOOD + ',"amount":"1e400"}', "amount_out_of_range"),
        ("{" + GOOD + ',"amount":1234567890123456789}', "amount_out_of_range"),
        ("{" + GOOD + ',"amount":0.0000000001}', "amount_out_of_range"),
        ("{" + GOOD + ',"amount":"1.0000000001"}', "amount_out_of_range"),
        ("{" + GOOD + ',"amount":"1e99999999"}', "amount_out_of_range"),
        # Numbers the parser holds only as doubles are checked on their written digits.
        ("{" + GOOD + ',"amount":-1e-400}', "amount_out_of_range"),
        (
            "{" + GOOD + ',"amount":1.00000000000000000000000000000000000000001}',
            "amount_out_of_range",
        ),
        ("{" + GOOD + ',"extra":{"amount":7},"amount":-1e-400}', "amount_out_of_range"),
        ("{" + GOOD + ',"amount":1,"ingested_at":"later"}', "bad_type:ingested_at"),
        ("{" + GOOD + ',"amount":1,"ingested_at":5}', "bad_type:ingested_at"),
        # Accepted edge cases: exact digits, exponents that land in range, zero.
        ("{" + GOOD + ',"amount":999999999999999999.999999999}', None),
        ("{" + GOOD + ',"amount":"1.5e3"}', None),
        ("{" + GOOD + ',"amount":1.5e3}', None),
        ("{" + GOOD + ',"amount":2.5E-7}', None),
        ("{" + GOOD + ',"amount":1E-9}', None),
        ("{" + GOOD + ',"amount":"0e99999999"}', None),
        ("{" + GOOD + ',"amount":"1.2300000000000"}', None),
        ("{" + GOOD.replace('"seq":1', '"seq":"12"') + ',"amount":1}', None),
        ("{" + GOOD + ',"amount":1,"ingested_at":null}', None),
    ],
)
def test_reason_for_each_contract_rule(spark, line, reason):
    assert reasons(spark, [line]) == [reason]
    assert reference_validate(line)[1] == reason  # the plain-Python reference agrees


def test_deep_nesting_and_huge_lines_are_quarantined_not_fatal(spark):
    deep = '{"event_id":' + "[" * 5000 + "]" * 5000 + "}"
    huge = "{" + GOOD + ',"amount":1,"pad":"' + "x" * 10_000_000 + '"}'
    assert reasons(spark, [deep, huge]) == ["malformed_json", None]


def test_mapped_field_names(spark):
    fields = FieldNames(event_id="id", key="account", seq="n", amount="value")
    line = '{"id":"e","account":"a","n":2,"event_time":"2026-01-01","op":"set","value":"7"}'
    row = validate(spark, [line], fields).first()
    assert (row["event_id"], row["key"], row["seq"], row["amount"], row["reason"]) == (
        "e",
        "a",
        2,
        Decimal("7"),
        None,
    )


# Written from the contract's "ISO-8601 timestamp", with the edges of each part; the
# reference reads them field by field and shares no pattern with the pipeline.
TIMESTAMPS = [
    "2026-01-01",
    "2026-01-01T10:00",
    "2026-01-01 10:00:00",
    "2026-01-01T10:00:00Z",
    "2026-01-01T10:00:00.123456789Z",
    "2026-01-01T10:00:00.1234567891Z",
    "2026-01-01T10:00:00.",
    "2026-01-01T10:00+05:30",
    "2026-01-01T10:00+0530",
    "2026-01-01T10:00:00+0530",
    "2026-01-01T10:00:00+05",
    "2026-01-01T10:00:00+5",
    "2026-01-01T10:00:00+05:3",
    "2026-01-01T10:00:00+18:00",
    "2026-01-01T10:00:00-18:00",
    "2026-01-01T10:00:00+18:01",
    "2026-01-01T10:00:00+05:60",
    "2026-01-01T10:00:00+05:30:00",
    "2026-01-01T10:00:00UTC",
    "2026-01-01T10:00:00 Z",
    "2026-01-01t10:00:00z",
    "2026-01-01Z",
    "2026-01-01+05",
    "2026-01-01-05",
    "2026-01-01T10:00.5",
    "2026-01-01T24:00:00",
    "2026-01-01T10:60:00",
    "2026-01-01T10:00:60",
    "2026-01-01T1:00:00",
    "2026-01-01T",
    "2026-01-01T10",
    "2026-1-01",
    "+2026-01-01",
    "20260101",
    " 2026-01-01",
    "2026-01-01 ",
    "2026-02-29",
    "2024-02-29",
    "2026-13-01",
    "0000-01-01",
    "0001-01-01T00:00:00Z",
    "0001-01-01T00:00:00+05:00",
    "9999-12-31T23:59:59.999999Z",
    "9999-12-31T23:59:59-05:00",
    "1582-10-10",
    "\u0662\u0660\u0662\u0666-01-01",
    "2026-01-01T23:59:59.999999999-18:00",
]


def test_timestamps_are_read_as_the_independent_reference_reads_them(spark):
    """Every timestamp above, and 2,000 others made from them by deleting, inserting and
    replacing characters, is accepted or refused as the reference decides, at the same
    instant to the microsecond."""
    rng = random.Random(3)
    values = list(TIMESTAMPS)
    for _ in range(2000):
        chars = list(rng.choice(TIMESTAMPS))
        for _ in range(rng.randint(1, 2)):
            at = rng.randrange(len(chars) + 1)
            edit = rng.randrange(3)
            if edit == 0 and at < len(chars):
                del chars[at]
            elif edit == 1:
                chars.insert(at, rng.choice(["0", "9", "-", "+", ":", ".", "T", "Z", " ", "13"]))
            elif at < len(chars):
                chars[at] = rng.choice("0123456789012345:-+TZ. ")
        values.append("".join(chars))
    lines = [
        "{" + GOOD.replace('"2026-01-01T10:00:00Z"', json.dumps(v)) + ',"amount":1}' for v in values
    ]
    rows = validate(spark, lines).selectExpr("raw", "reason", "unix_micros(event_time) AS micros")
    actual = {r["raw"]: (r["reason"], r["micros"]) for r in rows.collect()}
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    disagreements = {}
    for value, line in zip(values, lines, strict=True):
        event, reason = reference_validate(line)
        micros = (event["event_time"] - epoch) // timedelta(microseconds=1) if event else None
        if actual[line] != (reason, micros):
            disagreements[value] = {"pipeline": actual[line], "reference": (reason, micros)}
    assert not disagreements
    accepted = sum(actual[line][0] is None for line in lines)
    assert min(accepted, len(lines) - accepted) > 100, accepted  # both kinds were tried
