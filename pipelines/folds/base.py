"""The fold interface: one key's events, in any order, to that key's state row."""

from __future__ import annotations

from abc import ABC, abstractmethod
from itertools import pairwise
from typing import ClassVar

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql.types import StructType

# Columns every fold receives, typed as `parse_events` produces them.
EVENT_COLUMNS = ("key", "event_id", "seq", "event_time", "op", "amount")


class Fold(ABC):
    """A pluggable fold, run by Spark as a grouped map with one group per key.

    `fold_key` and `resume` are plain functions of Arrow tables, so they can be tested
    without Spark. They must sort the events themselves: rows of a group arrive in no order.
    """

    name: ClassVar[str]
    ops: ClassVar[frozenset[str]]
    state_schema: ClassVar[StructType]
    # The numeric state column whose change the reconciliation measures ("by how much").
    measure: ClassVar[str | None] = None
    # Whether `resume` is implemented; a fold without it re-folds every touched key.
    can_resume: ClassVar[bool] = False

    @abstractmethod
    def fold_key(self, events: pa.Table) -> pa.Table:
        """Return a one-row table matching `state_schema` for one key's events."""

    def fold_keys(self, events: pa.Table) -> pa.Table:
        """One state row per key, in the order the keys appear, for the events of many keys
        sorted by `key`, `seq` and `event_id` (each key's events whole and contiguous).

        Spark calls this with thousands of keys at a time. By default it calls `fold_key`
        for each key; a fold may do the whole batch at once, as long as the rows are equal.
        """
        boundaries = key_boundaries(events)
        return pa.concat_tables(
            [self.fold_key(events.slice(start, end - start)) for start, end in pairwise(boundaries)]
        )

    def resume(self, state: pa.Table, events: pa.Table) -> pa.Table:
        """Continue a stored one-row `state` with events whose `seq` all follow its `last_seq`.

        Must equal `fold_key` over the key's whole history (contract section 7).
        """
        raise NotImplementedError(f"fold {self.name} cannot resume from a stored state")

    @property
    def state_columns(self) -> list[str]:
        """State columns other than `key`: the ones a MERGE compares and updates."""
        return [f.name for f in self.state_schema.fields if f.name != "key"]

    @staticmethod
    def sort_events(events: pa.Table) -> pa.Table:
        """Events in `seq` order; equal `seq` broken by `event_id` so the order is total."""
        return events.sort_by([("seq", "ascending"), ("event_id", "ascending")])


def key_boundaries(events: pa.Table) -> list[int]:
    """Where each key's rows start in `events` (sorted by key), and its row count at the end."""
    keys = events["key"].combine_chunks()
    if len(keys) == 0:
        return [0]
    changes = pc.indices_nonzero(pc.not_equal(keys[1:], keys[:-1])).to_pylist()
    return [0, *[i + 1 for i in changes], len(keys)]
