"""The fold interface: one key's events, in any order, to that key's state row."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import pyarrow as pa
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
