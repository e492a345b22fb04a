"""`RecordChecker`: one record's fields against the contract, in Python workers.

Each record is parsed by msgspec (`json_values`) and its fields are checked in contract
order; the first failed check is the record's `reason`. The fields come out as text for
the JVM: `event_time` and `ingested_at` are checked there, by `validate.parse_events`.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from operator import itemgetter
from typing import Any

import msgspec
import pyarrow as pa
from msgspec.structs import astuple

from pipelines.folds.base import COMMON_NAMES, INGESTED_AT, EventField
from pipelines.transforms.json_values import MAX_SEQ, VALUE_CHECKS, JsonNumber, parse_object

BAD_INGESTED_AT = "bad_type:ingested_at"


def text_column(name: str) -> str:
    """The checker's output column holding a fold field's checked text."""
    return f"_field_{name}"


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
        every = (*COMMON_NAMES, *(f.name for f in payload), INGESTED_AT.name)
        self.renames = {name: names.get(name, name) for name in every}
        self.paths = tuple(self.renames.values())
        # Fields checked for presence before any type: the common ones and those every op needs.
        self.always = tuple(
            i for i, name in enumerate(every[:-1]) if i < 5 or payload[i - 5].required_for is None
        )
        self.always_values = itemgetter(*self.always)
        self.payload_checks = tuple((5 + i, f, VALUE_CHECKS[f.type]) for i, f in enumerate(payload))
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
        names += [text_column(f.name) for f in self.payload]
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
            # Columns after the first two (a redriven record's `record_key`) pass through.
            carried = batch.schema.names[2:]
            yield pa.RecordBatch.from_arrays(
                [batch.column(0), batch.column(1), *arrays, *batch.columns[2:]],
                names=["source_file", "raw", *names, *carried],
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
            doc = parse_object(raw)
            if doc is None:
                return self._rejected("malformed_json")
            values = tuple(doc.get(path) for path in self.paths)
        if None in self.always_values(values):
            first = next(i for i in self.always if values[i] is None)
            return self._rejected(f"missing_field:{(*COMMON_NAMES, *self._names)[first]}")
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


def _seq(value: Any) -> int | None:
    """A JSON integer, or a string of ASCII digits, from 1 to the largest bigint."""
    if type(value) is str and value.isascii() and value.isdigit():
        value = int(value)
    if type(value) is not int or not 1 <= value <= MAX_SEQ:
        return None
    return value
