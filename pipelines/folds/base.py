"""The fold interface (contract section 8): one key's ordered events to that key's state row.

A fold declares what it needs and the pipeline does the rest:
- `ops` and `fields`: the ops it knows and the fields it reads beyond the ones every event
  has (`event_id`, `key`, `seq`, `event_time`, `op`), each with its type and the ops that
  require it. Validation quarantines exactly what the fold cannot use, and the events table
  stores those fields, typed.
- `state_schema`: the state table's columns: `key`, the fold's own, and the bookkeeping every
  state keeps (`event_count`, `last_seq`, `missing_seq_count`, `last_event_time`); build it
  with `state_schema_with(...)`. The Arrow schema the fold returns is derived from it
  (`arrow_schema`).
- `resume`, where a stored state can be continued with later events (contract section 7).
- `is_deleted`, for folds whose state can be a deletion: such a key's row leaves the table.
- `measure` and `count_column`: what the reconciliation reports, when the state has them.

The pipeline sorts each key's events by `seq` (then `event_id`) before any fold code runs,
and calls `fold_keys` (`resume_keys` when resuming) with whole keys. `fold_key` and `resume`
are plain functions of Arrow tables, so a fold is tested without Spark
(`pipelines.testing.check_fold`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from itertools import pairwise
from typing import Any, ClassVar, Literal

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql.pandas.types import to_arrow_schema
from pyspark.sql.types import (
    DataType,
    DecimalType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)


@dataclass(frozen=True)
class CommonField:
    """A field every event has (contract section 1): its name and its type once valid."""

    name: str
    spark_type: DataType
    nullable: bool = False


# The fields every event has, in the contract's order, which is the order they are checked in.
COMMON_FIELDS = (
    CommonField("event_id", StringType()),
    CommonField("key", StringType()),
    CommonField("seq", LongType()),
    CommonField("event_time", TimestampType()),
    CommonField("op", StringType()),
)
# When the copy was written to the lake: optional, it decides between conflicting copies.
INGESTED_AT = CommonField("ingested_at", TimestampType(), nullable=True)
COMMON_NAMES = tuple(f.name for f in COMMON_FIELDS)
# Fields every event has, in the order a fold receives them.
COMMON_COLUMNS = ("key", "event_id", "seq", "event_time", "op")
# What two copies of an event share when identical, besides the fold's own fields: all but
# the id and the arrival.
COMMON_CONTENT = ("key", "seq", "event_time", "op")

# The bookkeeping every state row keeps beside the fold's own state: events applied, the highest
# `seq` applied, how many of `1 .. last_seq` are absent, and the time of the event with the
# last `seq`. The pipeline reads `last_seq` to tell which touched keys can resume.
BOOKKEEPING = (
    StructField("event_count", LongType(), False),
    StructField("last_seq", LongType(), False),
    StructField("missing_seq_count", LongType(), False),
    StructField("last_event_time", TimestampType(), True),
)


def state_schema_with(*columns: StructField) -> StructType:
    """A fold's state schema: `key`, the fold's own `columns`, then the `BOOKKEEPING` columns
    (filled by `sequence_counts`)."""
    return StructType([StructField("key", StringType(), False), *columns, *BOOKKEEPING])


def missing_bookkeeping(schema: StructType) -> list[str]:
    """The bookkeeping columns `schema` lacks, or has with another type."""
    types = {f.name: f.dataType for f in schema.fields}
    return [
        f"{f.name} {f.dataType.simpleString()}"
        for f in BOOKKEEPING
        if types.get(f.name) != f.dataType
    ]


FieldType = Literal["decimal", "integer", "string", "json"]
# decimal: a JSON number or a string holding one, at most 18 integer and 9 fractional digits.
# integer: a JSON integer or a string of digits, within a signed 64-bit integer.
# string: a JSON string. json: a JSON object, or a string holding one; stored as compact
# JSON text with sorted member names, so equal objects are equal text.
SPARK_TYPES: dict[str, DataType] = {
    "decimal": DecimalType(27, 9),
    "integer": LongType(),
    "string": StringType(),
    "json": StringType(),
}


@dataclass(frozen=True)
class EventField:
    """A field a fold reads beyond the common ones.

    `required_for` names the ops that need it (None: every op); a record of such an op
    without it is quarantined as `missing_field:<name>`. With any other op the field may be
    absent; when present it must still have its type, unless the op is in `ignored_for`:
    then the field is not read at all (not checked, not stored, no part of a copy's content).
    """

    name: str
    type: FieldType
    required_for: frozenset[str] | None = None
    ignored_for: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.type not in SPARK_TYPES:
            known = ", ".join(SPARK_TYPES)
            raise ValueError(f"field {self.name!r} has type {self.type!r}; known: {known}")
        if self.name in (*COMMON_NAMES, INGESTED_AT.name):
            raise ValueError(f"field {self.name!r} is one every event has: do not declare it")

    @property
    def spark_type(self) -> DataType:
        return SPARK_TYPES[self.type]

    @property
    def nullable(self) -> bool:
        return True  # absent where its op does not require it

    def required(self, op: str) -> bool:
        return self.required_for is None or op in self.required_for


class Fold(ABC):
    """A pluggable fold, run by Spark over sorted batches of whole keys.

    Subclasses set the class attributes below and implement `fold_key`. Options from the
    config's `fold_options:` arrive as keyword arguments of the constructor.
    """

    name: ClassVar[str]
    ops: ClassVar[frozenset[str]]
    fields: ClassVar[tuple[EventField, ...]] = ()
    state_schema: ClassVar[StructType]
    # The numeric state column whose change the reconciliation measures ("by how much").
    measure: ClassVar[str | None] = None
    # The state column counting the events applied: lets the reconciliation tell a key that
    # missed events from one that applied some twice.
    count_column: ClassVar[str | None] = None

    @abstractmethod
    def fold_key(self, events: pa.Table) -> pa.Table:
        """One key's events, sorted by `seq` and `event_id`, to a one-row table of
        `arrow_schema`."""

    def fold_keys(self, events: pa.Table) -> pa.Table:
        """One state row per key, in the order the keys appear, for the events of many keys
        sorted by `key`, `seq` and `event_id` (each key's events whole and contiguous).

        Spark calls this with thousands of keys at a time. By default it calls `fold_key`
        for each key; a fold may do the whole batch at once, as long as the rows are equal.
        """
        boundaries = key_boundaries(events)
        if len(boundaries) == 1:
            return self.arrow_schema.empty_table()
        return pa.concat_tables(
            [self.fold_key(events.slice(start, end - start)) for start, end in pairwise(boundaries)]
        )

    def resume(self, state: pa.Table, events: pa.Table) -> pa.Table:
        """Continue a stored one-row `state` with events (sorted) whose `seq` all follow its
        `last_seq`. Must equal `fold_key` over the key's whole history (contract section 7).
        """
        raise NotImplementedError(f"fold {self.name} cannot resume from a stored state")

    def resume_keys(self, states: pa.Table, events: pa.Table) -> pa.Table:
        """`resume` for many keys at once: `states` holds one stored row per key, in the order
        the keys appear in `events`, which holds their later events sorted by `key`, `seq` and
        `event_id` (each key's events whole and contiguous).

        Spark calls this with thousands of keys at a time. By default it calls `resume` for
        each key; a fold may do the whole batch at once, as long as the rows are equal.
        """
        boundaries = key_boundaries(events)
        if states.num_rows != len(boundaries) - 1:
            raise ValueError(
                f"resume_keys got {states.num_rows} stored rows for {len(boundaries) - 1} keys"
            )
        if states.num_rows == 0:
            return self.arrow_schema.empty_table()
        return pa.concat_tables(
            [
                self.resume(states.slice(i, 1), events.slice(start, end - start))
                for i, (start, end) in enumerate(pairwise(boundaries))
            ]
        )

    def is_deleted(self, states: pa.Table) -> pa.Array | None:
        """Which rows of `fold_keys`'s output are deletions (None: the fold never deletes).

        A deleted key's row is removed from the state table, or never inserted.
        """
        return None

    @property
    def can_resume(self) -> bool:
        """Whether `resume` is implemented; a fold without it re-folds every touched key."""
        return type(self).resume is not Fold.resume

    @property
    def deletes(self) -> bool:
        return type(self).is_deleted is not Fold.is_deleted

    @property
    def state_columns(self) -> list[str]:
        """State columns other than `key`: the ones a MERGE compares and updates."""
        return [f.name for f in self.state_schema.fields if f.name != "key"]

    @property
    def arrow_schema(self) -> pa.Schema:
        """The state schema as Arrow types: what `fold_key` and `fold_keys` return."""
        return to_arrow_schema(self.state_schema, timezone="UTC")

    @property
    def event_columns(self) -> tuple[str, ...]:
        """The columns of the events the fold receives."""
        return (*COMMON_COLUMNS, *(f.name for f in self.fields))

    @property
    def typed_fields(self) -> tuple[CommonField | EventField, ...]:
        """Every field a valid record has, typed, in the order validation checks them: the
        common ones, the fold's own, then `ingested_at`."""
        return (*COMMON_FIELDS, *self.fields, INGESTED_AT)

    @property
    def content_fields(self) -> tuple[str, ...]:
        """What two copies of an event must share to be identical: all but id and arrival."""
        return (*COMMON_CONTENT, *(f.name for f in self.fields))


class RowFold(Fold):
    """A fold written over Python rows: `fold_rows` (and `resume_rows`) take each event as a
    dict, in `seq` order, and return the state as a dict of `state_schema`'s columns.

    Simplest to write; a Python call per event, so slower than a fold over Arrow columns.
    """

    @abstractmethod
    def fold_rows(self, key: str, events: list[dict[str, Any]]) -> dict[str, Any]:
        """The state of `key` after `events` (never empty), starting from nothing."""

    def resume_rows(self, state: dict[str, Any], events: list[dict[str, Any]]) -> dict[str, Any]:
        raise NotImplementedError(f"fold {self.name} cannot resume from a stored state")

    def fold_key(self, events: pa.Table) -> pa.Table:
        rows = events.to_pylist()
        return self._table(self.fold_rows(rows[0]["key"], rows))

    def resume(self, state: pa.Table, events: pa.Table) -> pa.Table:
        return self._table(self.resume_rows(state.to_pylist()[0], events.to_pylist()))

    @property
    def can_resume(self) -> bool:
        return type(self).resume_rows is not RowFold.resume_rows

    def _table(self, row: dict[str, Any]) -> pa.Table:
        schema = self.arrow_schema
        if sorted(row) != sorted(schema.names):
            raise ValueError(
                f"fold {self.name} returned a row with {sorted(row)}, its state_schema "
                f"declares {sorted(schema.names)}"
            )
        try:
            return pa.Table.from_pylist([row], schema=schema)
        except (pa.ArrowException, TypeError, ValueError) as exc:
            raise ValueError(
                f"fold {self.name} returned {row!r}, which does not fit its state_schema: {exc}"
            ) from exc


def sequence_counts(
    events: list[dict[str, Any]], before: dict[str, Any] | None = None
) -> dict[str, Any]:
    """`event_count`, `last_seq`, `missing_seq_count` and `last_event_time` after `events`
    (sorted by `seq`), continuing the stored row `before` when resuming.

    The bookkeeping most folds keep beside their state: events applied, the highest `seq`,
    how many of `1 .. last_seq` are absent, and the time of the event with the last `seq`.
    """
    count = before["event_count"] if before else 0
    seen = before["last_seq"] - before["missing_seq_count"] if before else 0
    distinct = len({e["seq"] for e in events})
    last = events[-1]
    last_time: datetime | None = last["event_time"]
    return {
        "event_count": count + len(events),
        "last_seq": last["seq"],
        "missing_seq_count": last["seq"] - seen - distinct,
        "last_event_time": last_time,
    }


def key_boundaries(events: pa.Table) -> list[int]:
    """Where each key's rows start in `events` (sorted by key), and its row count at the end."""
    keys = events["key"].combine_chunks()
    if len(keys) == 0:
        return [0]
    changes = pc.indices_nonzero(pc.not_equal(keys[1:], keys[:-1])).to_pylist()
    return [0, *[i + 1 for i in changes], len(keys)]
