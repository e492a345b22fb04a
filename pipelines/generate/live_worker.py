"""A faulty live worker: the state a real event-driven consumer would have written.

It applies copies in arrival order (so late events land out of `seq` order: a late `set`
wipes later adds, a late `patch` or `delete` undoes later changes), applies re-delivered and
conflicting copies again (no dedupe), and now and then misses an event entirely. The demo
writes its state as the table to be corrected.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from pipelines.folds.snapshot import json_text, merge_patch
from pipelines.generate.balance import Event
from pipelines.generate.snapshot import SnapshotEvent


@dataclass
class WorkerState:
    balance: Decimal = Decimal(0)
    entity: dict[str, Any] | None = None
    event_count: int = 0
    seqs: set[int] = field(default_factory=set)
    last_event_time: datetime | None = None


def live_worker_states(
    arrivals: Iterable[Event | SnapshotEvent], skip_rate: float = 0.01, seed: int = 11
) -> list[dict]:
    """Fold events the way a careless consumer does; returns rows of the state table of the
    fold the events are for (`balance`, or `snapshot` for `SnapshotEvent`s)."""
    rng = random.Random(seed)
    states: dict[str, WorkerState] = {}
    snapshot = False
    for event in arrivals:
        if rng.random() < skip_rate:
            continue
        state = states.setdefault(event.key, WorkerState())
        if isinstance(event, SnapshotEvent):
            snapshot = True
            _apply_snapshot(state, event)
        elif event.op == "set":
            state.balance = event.amount
        elif event.op == "add":
            state.balance += event.amount
        else:
            state.balance -= event.amount
        state.event_count += 1
        state.seqs.add(event.seq)
        state.last_event_time = event.event_time
    rows = []
    for key, s in sorted(states.items()):
        if snapshot and s.entity is None:
            continue  # deleted: the worker removed its row
        measure = {"data": json_text(_plain(s.entity))} if snapshot else {"balance": s.balance}
        rows.append(
            {
                "key": key,
                **measure,
                "event_count": s.event_count,
                "last_seq": max(s.seqs),
                "missing_seq_count": max(s.seqs) - len(s.seqs),
                "last_event_time": s.last_event_time,
            }
        )
    return rows


def _apply_snapshot(state: WorkerState, event: SnapshotEvent) -> None:
    if event.op == "delete":
        state.entity = None
    elif event.op == "upsert":
        state.entity = event.data
    else:
        state.entity = merge_patch(state.entity, event.data)


def _plain(value: Any) -> Any:
    """Numbers as the pipeline stores them: `12.50` as 12.5, `100.00` as 100."""
    if isinstance(value, dict):
        return {name: _plain(item) for name, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else value.normalize()
    return value
