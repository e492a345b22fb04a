"""Generate a raw event log with chosen faults, seeded so every run is reproducible.

Events are spread over `days` of `dt=YYYY-MM-DD` partitions (the day a copy was ingested),
each day split into several files. Faults, each at its own rate:
identical duplicates (re-delivered copies), conflicting duplicates (same id, other content),
late events (ingested days later, so they land in a later partition), lost events (never
written: holes in `seq`), disorder (lines shuffled within a file), and garbage lines.

Two kinds of log, one per built-in fold: `balance` events (`balance.py`) and `snapshot`
events (`snapshot.py`). Each day's records are written by `writers.py`.
"""

from __future__ import annotations

import json
import random
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from pipelines.generate.balance import BalanceEvents
from pipelines.generate.base import Delivered, EventKind
from pipelines.generate.snapshot import SnapshotEvents
from pipelines.generate.writers import write_day

# The folds whose events the generator writes, and how: the one list of them.
GENERATORS: dict[str, EventKind] = {"balance": BalanceEvents(), "snapshot": SnapshotEvents()}


@dataclass(frozen=True)
class FaultRates:
    duplicate: float = 0.03
    conflict: float = 0.005
    late: float = 0.02
    lost: float = 0.002
    disorder: float = 0.2
    garbage: float = 0.01


@dataclass
class GeneratedLog:
    """What was written, so tests and the demo can reason about it."""

    out: str
    files: list[str] = field(default_factory=list)
    # Valid copies (`Event`s, or `SnapshotEvent`s for the snapshot fold), in arrival order.
    delivered: list[Any] = field(default_factory=list)
    injected: dict[str, int] = field(default_factory=dict)
    lines_written: int = 0


def generate_log(
    out: str | Path,
    events: int,
    keys: int,
    seed: int = 7,
    faults: FaultRates = FaultRates(),
    days: int = 5,
    files_per_day: int = 4,
    start: date = date(2026, 1, 1),
    data_format: str = "json",
    gzip_files: bool = False,
    fold: str = "balance",
) -> GeneratedLog:
    """Write a log of `fold`'s events (`balance` or `snapshot`) under `out`."""
    if fold not in GENERATORS:
        raise ValueError(f"no generator for fold {fold!r}; known: {', '.join(GENERATORS)}")
    kind = GENERATORS[fold]
    rng = random.Random(seed)
    out_dir = Path(out)
    log = GeneratedLog(out=str(out_dir), injected=defaultdict(int))
    by_day: dict[date, list[str | Delivered]] = defaultdict(list)
    for copy in _deliveries(rng, events, keys, faults, days, start, log, kind):
        by_day[copy.ingested_at.date()].append(copy)
        log.delivered.append(copy)
    for _ in range(round(events * faults.garbage)):
        day = start + timedelta(days=rng.randrange(days))
        garbage = rng.choice(kind.garbage_kinds)
        log.injected[f"garbage:{garbage}"] += 1
        by_day[day].append(_garbage_line(rng, garbage, day, kind))
    log.delivered.sort(key=lambda e: (e.ingested_at, e.event_id))
    for day, records in sorted(by_day.items()):
        _shuffle_share(rng, records, faults.disorder)
        log.injected["disordered_lines"] += round(len(records) * faults.disorder)
        log.files += write_day(
            out_dir, day, records, rng, files_per_day, data_format, gzip_files, kind
        )
        log.lines_written += len(records)
    log.injected = dict(log.injected)
    (out_dir / "_generator.json").write_text(
        json.dumps(
            {
                "seed": seed,
                "events": events,
                "keys": keys,
                "days": days,
                "faults": asdict(faults),
                "injected": log.injected,
                "lines_written": log.lines_written,
                # Named only when not the default, so a balance log's file stays as it was.
                **({"fold": fold} if fold != "balance" else {}),
            },
            indent=2,
            sort_keys=True,
        )
    )
    return log


def _deliveries(
    rng: random.Random,
    n_events: int,
    n_keys: int,
    faults: FaultRates,
    days: int,
    start: date,
    log: GeneratedLog,
    kind: EventKind,
) -> Iterator[Delivered]:
    """Yield every copy written to the lake, in event-time order."""
    key_names = [kind.key_name(i) for i in range(n_keys)]
    weights = [1.0 / (rank + 1) ** 0.6 for rank in range(n_keys)]  # a few hot keys
    chosen = rng.choices(key_names, weights=weights, k=n_events)
    next_seq: dict[str, int] = defaultdict(lambda: 1)
    origin = datetime(start.year, start.month, start.day, tzinfo=UTC)
    span = timedelta(days=days).total_seconds()
    for i, key in enumerate(chosen):
        seq = next_seq[key]
        next_seq[key] = seq + 1
        if rng.random() < faults.lost:
            log.injected["lost"] += 1
            continue
        event_time = origin + timedelta(seconds=span * i / n_events + rng.random())
        # One random draw after another, in this order: a seed gives the same log forever.
        event_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        content = kind.content(rng, seq)
        ingested_at = event_time + timedelta(seconds=rng.randint(1, 90))
        event = kind.event_class(
            event_id=event_id,
            key=key,
            seq=seq,
            event_time=event_time,
            ingested_at=ingested_at,
            **content,
            **kind.style(rng),
        )
        if rng.random() < faults.late:
            log.injected["late"] += 1
            if event.op == "delete":  # lands after later seqs of its key: a late delete
                log.injected["late_delete"] += 1
            event = replace(
                event, ingested_at=event.ingested_at + timedelta(days=rng.randint(1, 3))
            )
        yield from _copies(rng, event, faults, log, kind)


def _copies(
    rng: random.Random, event: Delivered, faults: FaultRates, log: GeneratedLog, kind: EventKind
) -> Iterator[Delivered]:
    yield event
    if rng.random() < faults.duplicate:
        log.injected["duplicate"] += 1
        delay = timedelta(minutes=rng.randint(0, 600)) if rng.random() < 0.5 else timedelta(0)
        yield replace(
            event, ingested_at=event.ingested_at + delay, **kind.redelivered(rng, event, log)
        )
    if rng.random() < faults.conflict:
        log.injected["conflict"] += 1
        other = kind.conflicting(rng, event)
        shift = timedelta(minutes=rng.randint(1, 120)) * rng.choice((-1, 1))
        yield replace(event, ingested_at=event.ingested_at + shift, **other)


_NOT_OBJECTS: tuple[Any, ...] = ("a name", [1, 2], 42, True, "[1, 2]", '{"name": ')


def _garbage_line(rng: random.Random, garbage: str, day: date, kind: EventKind) -> str:
    good: dict[str, Any] = {
        "event_id": f"junk-{rng.getrandbits(48):012x}",
        "key": kind.key_name(rng.randrange(1000)),
        "seq": rng.randint(1, 50),
        "event_time": f"{day.isoformat()}T12:00:00Z",
        **kind.valid_payload,
    }
    if garbage == "truncated":
        text = json.dumps(good)
        return text[: rng.randint(1, len(text) - 2)]
    if garbage == "not_json":
        return rng.choice(["not json at all", "<html>", "{'single': 'quotes'}", "{,}"])
    if garbage == "missing_field":
        del good[rng.choice(list(good))]
    elif garbage == "bad_seq":
        good["seq"] = rng.choice([0, -3, "three", 1.5])
    elif garbage == "unknown_op":
        good["op"] = rng.choice(kind.unknown_ops)
    elif garbage == "amount_out_of_range":
        good["amount"] = rng.choice(["1e400", "1234567890123456789012", "0.0000000001"])
    elif garbage == "bad_event_time":
        good["event_time"] = rng.choice(["yesterday", "2026-13-45T99:00:00Z", ""])
    elif garbage == "not_an_object":
        return json.dumps([good])
    elif garbage == "missing_data":  # absent, or null
        good["op"] = rng.choice(["upsert", "patch"])
        good["data"] = None
        if rng.random() < 0.5:
            del good["data"]
    elif garbage == "bad_data":
        good["data"] = rng.choice(_NOT_OBJECTS)
    return json.dumps(good)


def _shuffle_share(rng: random.Random, records: list, share: float) -> None:
    """Move about `share` of the records to random places (lines out of seq order)."""
    n = len(records)
    for _ in range(round(n * share)):
        i, j = rng.randrange(n), rng.randrange(n)
        records[i], records[j] = records[j], records[i]
