"""A user fold that learned an op: the snapshot fold with `replace`, whose quarantined
`unknown_op` events `backfill redrive --fold tests.learned_fold:SnapshotWithReplace` brings
back (tests/test_redrive.py)."""

from __future__ import annotations

from typing import Any

from pipelines.folds import EventField
from pipelines.folds.snapshot import SnapshotFold


class SnapshotWithReplace(SnapshotFold):
    """The snapshot fold that learned `replace`: an `upsert` by another name. Its state
    table is the snapshot fold's, so it takes over tables that fold wrote."""

    ops = SnapshotFold.ops | {"replace"}
    fields = (
        EventField(
            "data",
            "json",
            required_for=frozenset({"upsert", "patch", "replace"}),
            ignored_for=frozenset({"delete"}),
        ),
    )

    def fold_rows(self, key: str, events: list[dict[str, Any]]) -> dict[str, Any]:
        return super().fold_rows(key, _as_upserts(events))

    def resume_rows(self, state: dict[str, Any], events: list[dict[str, Any]]) -> dict[str, Any]:
        return super().resume_rows(state, _as_upserts(events))


def _as_upserts(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**e, "op": "upsert"} if e["op"] == "replace" else e for e in events]
