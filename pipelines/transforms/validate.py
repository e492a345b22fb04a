"""Parse raw records and give every record that breaks the contract a quarantine reason.

Records are parsed in Python workers (`mapInArrow`) by msgspec, a strict JSON parser: a JSON
number with a fraction or exponent comes out as the digits written (`JsonNumber`), so an
amount is never rounded through a double, and a string is told from a number. Each field is
then checked in contract order; the first failed check is the record's `reason`. Timestamps
are checked on the JVM by Spark's own cast, so `event_time` means what it meant to every
earlier run. Valid records have `reason = NULL` and typed columns.
"""

from __future__ import annotations

import gc
import json
import re
from collections.abc import Callable, Iterable, Iterator
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from typing import Any

import msgspec
import pyarrow as pa
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from pipelines.config import FieldNames

AMOUNT_TYPE = "decimal(27,9)"  # at most 18 integer and 9 fractional digits
MAX_INTEGER_DIGITS = 18
REQUIRED_FIELDS = ("event_id", "key", "seq", "event_time", "op", "amount")
MAX_SEQ = 2**63 - 1
AMOUNT_LIMIT = 10**MAX_INTEGER_DIGITS
BAD_INGESTED_AT = "bad_type:ingested_at"

_TIMESTAMP = r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?)?(Z|[+-]\d{2}(:?\d{2})?)?$"
# A decimal number as JSON writers and people write it: `12`, `-0.5`, `.5`, `5.`, `1e-3`.
_NUMERIC_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:[.][0-9]*)?|[.][0-9]+)(?:[eE][+-]?[0-9]+)?")
# The common amount, taken as it is written: no exponent, digits that fit.
_PLAIN_AMOUNT = re.compile(r"-?[0-9]{1,18}(?:[.][0-9]{1,9})?")
_MEMBER_END = re.compile(rb'"[ \t\r\n]*:')  # a member name's closing quote and its colon
_NINE_PLACES = Decimal("1e-9")

# What the Python workers return; `checked_reason` is the first failure up to `event_time`'s
# type, `later_reason` the first one after the `event_time` value check (contract order).
_CHECKED_SCHEMA = (
    "source_file string, raw string, event_id string, key string, seq long, "
    "event_time_text string, op string, amount_text string, ingested_at_text string, "
    "checked_reason string, later_reason string"
)


class JsonNumber(str):
    """A JSON number with a fraction or exponent, as written: never rounded through a float."""


_DECODER = msgspec.json.Decoder(float_hook=JsonNumber)


def parse_events(raw_df: DataFrame, fields: FieldNames, ops: Iterable[str]) -> DataFrame:
    """`(source_file, raw)` -> one row per record with typed fields and a `reason` or NULL."""
    checker = RecordChecker(fields.as_dict(), frozenset(ops))
    checked_df = raw_df.select("source_file", "raw").mapInArrow(
        checker.check_batches, _CHECKED_SCHEMA
    )
    event_time = _timestamp("event_time_text")
    ingested_at = _timestamp("ingested_at_text")
    reason = F.coalesce(
        F.col("checked_reason"),
        F.when(event_time.isNull(), F.lit("bad_type:event_time")),
        F.col("later_reason"),
        F.when(
            F.col("ingested_at_text").isNotNull() & ingested_at.isNull(), F.lit(BAD_INGESTED_AT)
        ),
    )
    return checked_df.select(
        "source_file",
        "raw",
        "event_id",
        "key",
        "seq",
        event_time.alias("event_time"),
        "op",
        F.col("amount_text").cast(AMOUNT_TYPE).alias("amount"),
        ingested_at.alias("ingested_at"),
        reason.alias("reason"),
    )


def _timestamp(text_col: str) -> Column:
    text = F.col(text_col)
    return F.when(text.rlike(_TIMESTAMP), text.try_cast("timestamp"))


class RecordChecker:
    """The contract's rules for one record, run in Python workers over Arrow batches."""

    def __init__(self, fields: dict[str, str], ops: frozenset[str]) -> None:
        self.fields = fields
        self.paths = tuple(fields[name] for name in (*REQUIRED_FIELDS, "ingested_at"))
        self.ops = ops
        # The common record, decoded and type-checked by msgspec in C: the contract's fields
        # with their JSON types, nothing else. Any other record takes the general path.
        event = msgspec.defstruct(
            "Event",
            [
                ("event_id", str),
                ("key", str),
                ("seq", int),
                ("event_time", str),
                ("op", str),
                ("amount", Any),
                ("ingested_at", str | None, None),
            ],
            rename=dict(fields),
            gc=False,
        )
        self.decode_event: Callable[[bytes], Any] = msgspec.json.Decoder(
            event, float_hook=JsonNumber
        ).decode

    def __reduce__(self) -> tuple[Any, ...]:
        """Sent to the Python workers as its settings; the decoder is built there."""
        return (RecordChecker, (self.fields, self.ops))

    def check_batches(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        names = ["event_id", "key", "seq", "event_time_text", "op", "amount_text"]
        names += ["ingested_at_text", "checked_reason", "later_reason"]
        types = [pa.string(), pa.string(), pa.int64(), *[pa.string()] * 6]
        check = self.check
        for batch in batches:
            # Bytes, not str: a line that is not UTF-8 must reach the parser as it is.
            raws = batch.column(1).cast(pa.binary()).to_pylist()
            # The rows are short-lived tuples without cycles: the collector's passes over
            # them cost more than the checks themselves.
            gc.disable()
            try:
                rows = [check(raw) for raw in raws]
            finally:
                gc.enable()
            columns = zip(*rows, strict=True) if rows else [[]] * len(types)
            arrays = [pa.array(values, type=t) for values, t in zip(columns, types, strict=True)]
            yield pa.RecordBatch.from_arrays(
                [batch.column(0), batch.column(1), *arrays], names=["source_file", "raw", *names]
            )

    def check(self, raw: bytes | None) -> tuple[Any, ...]:
        """(event_id, key, seq, event_time, op, amount, ingested_at, reason, later reason)."""
        if raw is None:
            return _rejected("malformed_json")
        try:
            e = self.decode_event(raw)
            values: Any = (e.event_id, e.key, e.seq, e.event_time, e.op, e.amount, e.ingested_at)
            # One `":` per member: exactly the fields read, none repeated, nothing else.
            if raw.count(b'":') != 6 + (e.ingested_at is not None):
                values = None
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError, ValueError, TypeError):
            values = None
        if values is None:
            doc = _parse_object(raw)
            if doc is None:
                return _rejected("malformed_json")
            values = [doc.get(path) for path in self.paths]
        if None in values[:6]:
            return _rejected(f"missing_field:{REQUIRED_FIELDS[values.index(None)]}")
        event_id, key, seq_value, event_time, op, amount_value, ingested_at = values
        if type(event_id) is not str or not event_id.strip():
            return _rejected("bad_type:event_id")
        if type(key) is not str or not key.strip():
            return _rejected("bad_type:key")
        seq = _seq(seq_value)
        if seq is None:
            return _rejected("bad_seq")
        if type(event_time) is not str:
            return _rejected("bad_type:event_time")
        # The rules after `event_time`'s value, which the JVM checks between the two halves.
        if type(op) is not str or op not in self.ops:
            return (event_id, key, seq, event_time, None, None, None, None, "unknown_op")
        amount, reason = _amount(amount_value)
        if reason is None and ingested_at is not None and type(ingested_at) is not str:
            reason = BAD_INGESTED_AT
        if reason is not None:
            return (event_id, key, seq, event_time, op, None, None, None, reason)
        return (event_id, key, seq, event_time, op, amount, ingested_at, None, None)


def _rejected(reason: str) -> tuple[Any, ...]:
    return (None, None, None, None, None, None, None, reason, None)


def _parse_object(raw: bytes) -> dict[str, Any] | None:
    """The record as a JSON object, or None when it is not exactly one valid object.

    msgspec rejects bad UTF-8, trailing text and non-standard constants, but keeps the last
    of repeated member names, which JSON readers disagree on: such a record is malformed.
    """
    try:
        doc = _DECODER.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError, ValueError):
        return None
    if type(doc) is not dict:
        return None
    # Each member ends in `"` and `:`; more of those than members means a repeated name,
    # or a nested object or string holding one: only then is the record parsed again.
    members = len(doc)
    if raw.count(b'":') != members and len(_MEMBER_END.findall(raw)) != members:
        return None if _has_repeated_names(raw) else doc
    return doc


def _has_repeated_names(raw: bytes) -> bool:
    def reject(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        if len({name for name, _ in pairs}) != len(pairs):
            raise ValueError("repeated member name")
        return dict(pairs)

    try:
        json.loads(raw, object_pairs_hook=reject)
    except (ValueError, RecursionError):
        return True
    return False


def _seq(value: Any) -> int | None:
    """A JSON integer, or a string of ASCII digits, from 1 to the largest bigint."""
    if type(value) is str and value.isascii() and value.isdigit():
        value = int(value)
    if type(value) is not int or not 1 <= value <= MAX_SEQ:
        return None
    return value


def _amount(value: Any) -> tuple[str | None, str | None]:
    """(the amount as text Spark casts exactly, None) or (None, the reason it is refused).

    A JSON number or a string holding one; at most 18 integer and 9 fractional significant
    digits, judged on the digits as written (`1e400` and `1.0000000001` are out of range).
    """
    kind = type(value)
    if kind is int:
        fits = -AMOUNT_LIMIT < value < AMOUNT_LIMIT
        return (str(value), None) if fits else (None, "amount_out_of_range")
    if kind is not JsonNumber and (kind is not str or not _NUMERIC_TEXT.fullmatch(value)):
        return None, "bad_type:amount"
    if _PLAIN_AMOUNT.fullmatch(value):
        return value, None
    text = _exact_amount_text(value)
    return (text, None) if text is not None else (None, "amount_out_of_range")


def _exact_amount_text(number: str) -> str | None:
    """The number's value with at most 9 decimal places, or None when it does not fit."""
    try:
        amount = Decimal(number)
    except InvalidOperation:  # an exponent beyond any decimal
        return None
    if amount.is_zero():
        return "0"
    if amount.adjusted() >= MAX_INTEGER_DIGITS:
        return None
    # Below 1e18 the quantized value has at most 27 digits: exact in the default context.
    quantized = amount.quantize(_NINE_PLACES, rounding=ROUND_DOWN)
    return str(quantized) if quantized == amount else None
