"""A faulty live worker: the state a real event-driven consumer would have written.

It applies copies in arrival order (so late events land out of `seq` order and a late `set`
wipes later adds), applies re-delivered and conflicting copies again (no dedupe), and now
and then misses an event entirely. The demo writes its state as the table to be corrected.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from pipelines.generate.events import Event


@dataclass
class WorkerState:
    balance: Decimal = Decimal(0)
    event_count: int = 0
    seqs: set[int] = field(default_factory=set)
    last_event_time: datetime | None = None


def live_worker_states(
    arrivals: Iterable[Event], skip_rate: float = 0.01, seed: int = 11
) -> list[dict]:
    """Fold events the way a careless consumer does; returns rows of the balance state."""
    rng = random.Random(seed)
    states: dict[str, WorkerState] = {}
    for event in arrivals:
        if rng.random() < skip_rate:
            continue
        state = states.setdefault(event.key, WorkerState())
        if event.op == "set":
            state.balance = event.amount
        elif event.op == "add":
            state.balance += event.amount
        else:
            state.balance -= event.amount
        state.event_count += 1
        state.seqs.add(event.seq)
        state.last_event_time = event.event_time
    return [
        {
            "key": key,
            "balance": s.balance,
            "event_count": s.event_count,
            "last_seq": max(s.seqs),
            "missing_seq_count": max(s.seqs) - len(s.seqs),
            "last_event_time": s.last_event_time,
        }
        for key, s in sorted(states.items())
    ]
