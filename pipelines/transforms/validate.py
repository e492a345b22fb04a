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
from collections.abc import Callable, Iterator
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from operator import itemgetter
from typing import Any

import msgspec
import pyarrow as pa
from msgspec.structs import astuple
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from pipelines.config import FieldNames
from pipelines.folds.base import EventField, Fold

MAX_INTEGER_DIGITS = 18  # of a decimal field: at most 18 integer and 9 fractional digits
COMMON_FIELDS = ("event_id", "key", "seq", "event_time", "op")
MAX_SEQ = 2**63 - 1
AMOUNT_LIMIT = 10**MAX_INTEGER_DIGITS
BAD_INGESTED_AT = "bad_type:ingested_at"

# ISO-8601 in the extended form: a date, or a date and a time of day with an optional zone.
_TIMESTAMP = r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}(:?\d{2})?)?)?$"
# Spark's cast takes `10:00Z` and `10:00:00+05:30` but not `10:00+05:30`: given seconds.
_MINUTES_THEN_OFFSET = r"^(.{10}[T ]\d{2}:\d{2})([+-][0-9:]+)$"
# The instants a timestamp column can hold for every reader: Python's datetime (PySpark's
# collect, pandas, delta-rs) stops at years 1 and 9999, though Spark goes further.
_FIRST_INSTANT = "TIMESTAMP'0001-01-01 00:00:00Z'"
_LAST_INSTANT = "TIMESTAMP'9999-12-31 23:59:59.999999Z'"
# A decimal number as JSON writers and people write it: `12`, `-0.5`, `.5`, `5.`, `1e-3`.
_NUMERIC_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:[.][0-9]*)?|[.][0-9]+)(?:[eE][+-]?[0-9]+)?")
# The common amount, taken as it is written: no exponent, digits that fit.
_PLAIN_AMOUNT = re.compile(r"-?[0-9]{1,18}(?:[.][0-9]{1,9})?")
_INTEGER_TEXT = re.compile(r"-?[0-9]{1,19}")
_MEMBER_END = re.compile(rb'"[ \t\r\n]*:')  # a member name's closing quote and its colon
_NINE_PLACES = Decimal("1e-9")
_CHECKED_COMMON = (
    "source_file string, raw string, event_id string, key string, seq long, "
    "event_time_text string, op string"
)
_CHECKED_TAIL = "ingested_at_text string, checked_reason string, later_reason string"


class JsonNumber(str):
    """A JSON number with a fraction or exponent, as written: never rounded through a float."""


_DECODER = msgspec.json.Decoder(float_hook=JsonNumber)


def parse_events(raw_df: DataFrame, fields: FieldNames, fold: Fold) -> DataFrame:
    """`(source_file, raw)` -> one row per record with typed fields and a `reason` or NULL.

    The typed fields are the common ones, then the fold's own (`fold.fields`), then
    `ingested_at`: the events table's columns.
    """
    checker = RecordChecker(fields.as_dict(), fold.ops, fold.fields)
    payload_schema = "".join(f"{_text_column(f.name)} string, " for f in fold.fields)
    checked_df = raw_df.select("source_file", "raw").mapInArrow(
        checker.check_batches, f"{_CHECKED_COMMON}, {payload_schema}{_CHECKED_TAIL}"
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
        # Checked in Python to fit the type: the casts are exact.
        *[F.col(_text_column(f.name)).cast(f.spark_type).alias(f.name) for f in fold.fields],
        ingested_at.alias("ingested_at"),
        reason.alias("reason"),
    )


def _text_column(name: str) -> str:
    return f"_field_{name}"


def _timestamp(text_col: str) -> Column:
    return timestamp_from_text(F.col(text_col))


def timestamp_from_text(text: Column) -> Column:
    """The instant an ISO-8601 text names, or NULL when it names none the tables can hold."""
    moment = F.coalesce(  # the second cast runs only where the first gave NULL
        text.try_cast("timestamp"),
        F.regexp_replace(text, _MINUTES_THEN_OFFSET, "$1:00$2").try_cast("timestamp"),
    )
    return F.when(text.rlike(_TIMESTAMP) & within_readers_range(moment), moment)


def within_readers_range(moment: Column) -> Column:
    return moment.between(F.expr(_FIRST_INSTANT), F.expr(_LAST_INSTANT))


class RecordChecker:
    """The contract's rules for one record, run in Python workers over Arrow batches.

    `names` maps each field to its name in the raw records (the config's `fields:`);
    `ops` and `payload` are the fold's ops and its own fields.
    """

    def __init__(
        self, names: dict[str, str], ops: frozenset[str], payload: tuple[EventField, ...] = ()
    ) -> None:
        self.names = names
        self.ops = ops
        self.payload = payload
        every = (*COMMON_FIELDS, *(f.name for f in payload), "ingested_at")
        self.renames = {name: names.get(name, name) for name in every}
        self.paths = tuple(self.renames.values())
        # Fields checked for presence before any type: the common ones and those every op needs.
        self.always = tuple(
            i for i, name in enumerate(every[:-1]) if i < 5 or payload[i - 5].required_for is None
        )
        self.always_values = itemgetter(*self.always)
        self.payload_checks = tuple(
            (5 + i, f, _VALUE_CHECKS[f.type]) for i, f in enumerate(payload)
        )
        # The tails of a record refused after its `op`: no field texts, no `ingested_at`, no
        # first-half reason, then the reason.
        self.nothing = (None,) * (len(payload) + 2)
        self.unknown_op = (None, *self.nothing, "unknown_op")
        self.nested = tuple(i for i, f in enumerate(payload) if f.type == "json")
        # The common record, decoded and type-checked by msgspec in C: the fields with their
        # JSON types, nothing else. Any other record takes the general path.
        event = msgspec.defstruct(
            "Event",
            [
                ("event_id", str),
                ("key", str),
                ("seq", int),
                ("event_time", str),
                ("op", str),
                *[(f.name, Any, None) for f in payload],
                ("ingested_at", str | None, None),
            ],
            rename=self.renames,
            gc=False,
        )
        self.decode_event: Callable[[bytes], Any] = msgspec.json.Decoder(
            event, float_hook=JsonNumber
        ).decode

    def __reduce__(self) -> tuple[Any, ...]:
        """Sent to the Python workers as its settings; the decoder is built there."""
        return (RecordChecker, (self.names, self.ops, self.payload))

    def check_batches(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        names = ["event_id", "key", "seq", "event_time_text", "op"]
        names += [_text_column(f.name) for f in self.payload]
        names += ["ingested_at_text", "checked_reason", "later_reason"]
        types = [pa.string(), pa.string(), pa.int64(), *[pa.string()] * (len(names) - 3)]
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

    def _decoded(self, raw: bytes) -> tuple[Any, ...] | None:
        """The fields of a record that the fast path can vouch for, or None."""
        try:
            values = self.decode_event(raw)
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError, ValueError, TypeError):
            return None
        fields = astuple(values)
        # One `":` per member: exactly the fields read, none repeated, nothing else. The
        # common fields are never None here: msgspec required them with their types.
        members = len(fields) - fields.count(None)
        for i in self.nested:
            inner = _members(fields[5 + i])
            if inner is None:
                return None
            members += inner
        return fields if raw.count(b'":') == members else None

    def check(self, raw: bytes | None) -> tuple[Any, ...]:
        """(event_id, key, seq, event_time, op, *payload, ingested_at, reason, later reason)."""
        if raw is None:
            return self._rejected("malformed_json")
        values = self._decoded(raw)
        if values is None:
            doc = _parse_object(raw)
            if doc is None:
                return self._rejected("malformed_json")
            values = tuple(doc.get(path) for path in self.paths)
        if None in self.always_values(values):
            first = next(i for i in self.always if values[i] is None)
            return self._rejected(f"missing_field:{(*COMMON_FIELDS, *self._names)[first]}")
        event_id, key, seq_value, event_time, op = values[:5]
        if type(event_id) is not str or not event_id.strip():
            return self._rejected("bad_type:event_id")
        if type(key) is not str or not key.strip():
            return self._rejected("bad_type:key")
        seq = _seq(seq_value)
        if seq is None:
            return self._rejected("bad_seq")
        if type(event_time) is not str:
            return self._rejected("bad_type:event_time")
        # The rules after `event_time`'s value, which the JVM checks between the two halves.
        if type(op) is not str or op not in self.ops:
            return (event_id, key, seq, event_time, *self.unknown_op)
        texts: list[str | None] = []
        for i, field, check_value in self.payload_checks:
            if op in field.ignored_for:
                texts.append(None)
                continue
            value = values[i]
            if value is None:
                if field.required_for is None or op in field.required_for:
                    reason = f"missing_field:{field.name}"
                    return (event_id, key, seq, event_time, op, *self.nothing, reason)
                texts.append(None)
                continue
            text, problem = check_value(value, field.name)
            if problem is not None:
                return (event_id, key, seq, event_time, op, *self.nothing, problem)
            texts.append(text)
        ingested_at = values[-1]
        if ingested_at is not None and type(ingested_at) is not str:
            return (event_id, key, seq, event_time, op, *self.nothing, BAD_INGESTED_AT)
        return (event_id, key, seq, event_time, op, *texts, ingested_at, None, None)

    @property
    def _names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.payload)

    def _rejected(self, reason: str) -> tuple[Any, ...]:
        return (None,) * (5 + len(self.payload) + 1) + (reason, None)


def _members(value: Any) -> int | None:
    """Members of the objects nested in `value`; None when a string inside it holds `":`,
    which the count of member ends in the raw text could not tell apart."""
    kind = type(value)
    if kind is dict:
        total = len(value)
        for name, item in value.items():
            inner = _members(item)
            if inner is None or '":' in name:
                return None
            total += inner
        return total
    if kind is list:
        total = 0
        for item in value:
            inner = _members(item)
            if inner is None:
                return None
            total += inner
        return total
    if kind is str and '":' in value:
        return None
    return 0


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


def _decimal(value: Any, name: str) -> tuple[str | None, str | None]:
    """(the number as text Spark casts exactly, None) or (None, the reason it is refused).

    A JSON number or a string holding one; at most 18 integer and 9 fractional significant
    digits, judged on the digits as written (`1e400` and `1.0000000001` are out of range).
    """
    kind = type(value)
    if kind is int:
        fits = -AMOUNT_LIMIT < value < AMOUNT_LIMIT
        return (str(value), None) if fits else (None, f"{name}_out_of_range")
    if kind is not JsonNumber and (kind is not str or not _NUMERIC_TEXT.fullmatch(value)):
        return None, f"bad_type:{name}"
    if _PLAIN_AMOUNT.fullmatch(value):
        return value, None
    text = _exact_amount_text(value)
    return (text, None) if text is not None else (None, f"{name}_out_of_range")


def _integer(value: Any, name: str) -> tuple[str | None, str | None]:
    """A JSON integer, or a string of digits with an optional `-`, within a signed bigint."""
    if type(value) is str and _INTEGER_TEXT.fullmatch(value):
        value = int(value)
    if type(value) is not int:
        return None, f"bad_type:{name}"
    if not -MAX_SEQ - 1 <= value <= MAX_SEQ:
        return None, f"{name}_out_of_range"
    return str(value), None


def _string(value: Any, name: str) -> tuple[str | None, str | None]:
    return (value, None) if type(value) is str else (None, f"bad_type:{name}")


def _json_object(value: Any, name: str) -> tuple[str | None, str | None]:
    """A JSON object, or a string holding one, as canonical text: compact, member names
    sorted, numbers without trailing zeros. Equal objects give equal text, however written."""
    if type(value) is str:
        value = _parse_object(value.encode())
    if type(value) is not dict:
        return None, f"bad_type:{name}"
    return _ENCODE_JSON(_plain_numbers(value)).decode(), None


def _plain_numbers(value: Any) -> Any:
    """`JsonNumber`s as numbers a JSON encoder writes: `1.50` as 1.5, `1.0` and `1e2` as 1
    and 100, so one value has one text."""
    kind = type(value)
    if kind is dict:
        return {name: _plain_numbers(item) for name, item in value.items()}
    if kind is list:
        return [_plain_numbers(item) for item in value]
    if kind is JsonNumber:
        number = Decimal(value)
        if not number.is_finite():
            return number
        number = number.normalize()
        if number == number.to_integral_value() and number.adjusted() < 30:
            return int(number)
        return number
    return value


_ENCODE_JSON = msgspec.json.Encoder(order="sorted", decimal_format="number").encode
_VALUE_CHECKS: dict[str, Callable[[Any, str], tuple[str | None, str | None]]] = {
    "decimal": _decimal,
    "integer": _integer,
    "string": _string,
    "json": _json_object,
}


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
