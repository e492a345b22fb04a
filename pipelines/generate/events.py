"""Generate a raw event log with chosen faults, seeded so every run is reproducible.

Events are spread over `days` of `dt=YYYY-MM-DD` partitions (the day a copy was ingested),
each day split into several files. Faults, each at its own rate:
identical duplicates (re-delivered copies), conflicting duplicates (same id, other content),
late events (ingested days later, so they land in a later partition), lost events (never
written: holes in `seq`), disorder (lines shuffled within a file), and garbage lines.
"""

from __future__ import annotations

import gzip
import json
import random
import uuid
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

GARBAGE_KINDS = (
    "truncated",
    "not_json",
    "missing_field",
    "bad_seq",
    "unknown_op",
    "amount_out_of_range",
    "bad_event_time",
    "not_an_object",
)


@dataclass(frozen=True)
class FaultRates:
    duplicate: float = 0.03
    conflict: float = 0.005
    late: float = 0.02
    lost: float = 0.002
    disorder: float = 0.2
    garbage: float = 0.01


@dataclass(frozen=True)
class Event:
    """One copy of an event as delivered to the lake."""

    event_id: str
    key: str
    seq: int
    event_time: datetime
    op: str
    amount: Decimal
    ingested_at: datetime
    amount_as_string: bool = False

    def to_json(self) -> str:
        amount = f'"{self.amount}"' if self.amount_as_string else str(self.amount)
        return (
            f'{{"event_id":"{self.event_id}","key":"{self.key}","seq":{self.seq},'
            f'"event_time":"{_iso(self.event_time)}","op":"{self.op}","amount":{amount},'
            f'"ingested_at":"{_iso(self.ingested_at)}"}}'
        )


@dataclass
class GeneratedLog:
    """What was written, so tests and the demo can reason about it."""

    out: str
    files: list[str] = field(default_factory=list)
    delivered: list[Event] = field(default_factory=list)  # valid copies, in arrival order
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
) -> GeneratedLog:
    rng = random.Random(seed)
    out_dir = Path(out)
    log = GeneratedLog(out=str(out_dir), injected=defaultdict(int))
    by_day: dict[date, list[str | Event]] = defaultdict(list)
    for copy in _deliveries(rng, events, keys, faults, days, start, log):
        by_day[copy.ingested_at.date()].append(copy)
        log.delivered.append(copy)
    for _ in range(round(events * faults.garbage)):
        day = start + timedelta(days=rng.randrange(days))
        kind = rng.choice(GARBAGE_KINDS)
        log.injected[f"garbage:{kind}"] += 1
        by_day[day].append(_garbage_line(rng, kind, day))
    log.delivered.sort(key=lambda e: (e.ingested_at, e.event_id))
    for day, records in sorted(by_day.items()):
        _shuffle_share(rng, records, faults.disorder)
        log.injected["disordered_lines"] += round(len(records) * faults.disorder)
        log.files += _write_day(out_dir, day, records, rng, files_per_day, data_format, gzip_files)
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
):
    """Yield every copy written to the lake, in event-time order."""
    key_names = [f"acct-{i:06d}" for i in range(n_keys)]
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
        event = Event(
            event_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            key=key,
            seq=seq,
            event_time=event_time,
            op=_pick_op(rng, seq),
            amount=Decimal(rng.randint(1, 5_000_000)).scaleb(-2),
            ingested_at=event_time + timedelta(seconds=rng.randint(1, 90)),
            amount_as_string=rng.random() < 0.5,
        )
        if rng.random() < faults.late:
            log.injected["late"] += 1
            event = _replace(
                event, ingested_at=event.ingested_at + timedelta(days=rng.randint(1, 3))
            )
        yield from _copies(rng, event, faults, log)


def _copies(rng: random.Random, event: Event, faults: FaultRates, log: GeneratedLog):
    yield event
    if rng.random() < faults.duplicate:
        log.injected["duplicate"] += 1
        delay = timedelta(minutes=rng.randint(0, 600)) if rng.random() < 0.5 else timedelta(0)
        yield _replace(event, ingested_at=event.ingested_at + delay)
    if rng.random() < faults.conflict:
        log.injected["conflict"] += 1
        other = event.amount + Decimal(rng.randint(1, 999)).scaleb(-2)
        shift = timedelta(minutes=rng.randint(1, 120)) * rng.choice((-1, 1))
        yield _replace(event, amount=other, ingested_at=event.ingested_at + shift)


def _pick_op(rng: random.Random, seq: int) -> str:
    if seq == 1:
        return "set"
    roll = rng.random()
    return "set" if roll < 0.03 else "subtract" if roll < 0.35 else "add"


def _replace(event: Event, **changes: Any) -> Event:
    return Event(**{**asdict(event), **changes})


def _garbage_line(rng: random.Random, kind: str, day: date) -> str:
    good: dict[str, Any] = {
        "event_id": f"junk-{rng.getrandbits(48):012x}",
        "key": f"acct-{rng.randrange(1000):06d}",
        "seq": rng.randint(1, 50),
        "event_time": f"{day.isoformat()}T12:00:00Z",
        "op": "add",
        "amount": "1.00",
    }
    if kind == "truncated":
        text = json.dumps(good)
        return text[: rng.randint(1, len(text) - 2)]
    if kind == "not_json":
        return rng.choice(["not json at all", "<html>", "{'single': 'quotes'}", "{,}"])
    if kind == "missing_field":
        del good[rng.choice(list(good))]
    elif kind == "bad_seq":
        good["seq"] = rng.choice([0, -3, "three", 1.5])
    elif kind == "unknown_op":
        good["op"] = rng.choice(["multiply", "ADD", ""])
    elif kind == "amount_out_of_range":
        good["amount"] = rng.choice(["1e400", "1234567890123456789012", "0.0000000001"])
    elif kind == "bad_event_time":
        good["event_time"] = rng.choice(["yesterday", "2026-13-45T99:00:00Z", ""])
    elif kind == "not_an_object":
        return json.dumps([good])
    return json.dumps(good)


def _shuffle_share(rng: random.Random, records: list, share: float) -> None:
    """Move about `share` of the records to random places (lines out of seq order)."""
    n = len(records)
    for _ in range(round(n * share)):
        i, j = rng.randrange(n), rng.randrange(n)
        records[i], records[j] = records[j], records[i]


def _write_day(
    out_dir: Path,
    day: date,
    records: list[str | Event],
    rng: random.Random,
    files_per_day: int,
    data_format: str,
    gzip_files: bool,
) -> list[str]:
    part_dir = out_dir / f"dt={day.isoformat()}"
    part_dir.mkdir(parents=True, exist_ok=True)
    chunks: list[list[str | Event]] = [[] for _ in range(files_per_day)]
    for record in records:
        chunks[rng.randrange(files_per_day)].append(record)
    written = []
    for index, chunk in enumerate(chunks):
        if not chunk:
            continue
        name = f"part-{rng.getrandbits(32):08x}-{index:03d}"
        if data_format == "parquet":
            path = part_dir / f"{name}.parquet"
            _write_parquet(path, chunk)
        else:
            path = part_dir / (f"{name}.jsonl.gz" if gzip_files else f"{name}.jsonl")
            text = "\n".join(r if isinstance(r, str) else r.to_json() for r in chunk) + "\n"
            if gzip_files:
                path.write_bytes(gzip.compress(text.encode("utf-8")))
            else:
                path.write_text(text, encoding="utf-8")
        written.append(str(path))
    return written


def _write_parquet(path: Path, chunk: list[str | Event]) -> None:
    """Typed Parquet columns; garbage that only JSON can hold becomes a row missing fields."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = []
    for record in chunk:
        if isinstance(record, Event):
            rows.append(
                {
                    "event_id": record.event_id,
                    "key": record.key,
                    "seq": record.seq,
                    "event_time": _iso(record.event_time),
                    "op": record.op,
                    "amount": str(record.amount),
                    "ingested_at": _iso(record.ingested_at),
                }
            )
            continue
        try:
            parsed = json.loads(record)
        except ValueError:
            parsed = None
        row = parsed if isinstance(parsed, dict) else {}
        seq = row.get("seq")
        rows.append(
            {
                "event_id": row.get("event_id"),
                "key": row.get("key"),
                "seq": seq if isinstance(seq, int) else None,
                "event_time": row.get("event_time"),
                "op": row.get("op"),
                "amount": None if row.get("amount") is None else str(row.get("amount")),
                "ingested_at": row.get("ingested_at"),
            }
        )
    schema = pa.schema(
        [
            ("event_id", pa.string()),
            ("key", pa.string()),
            ("seq", pa.int64()),
            ("event_time", pa.string()),
            ("op", pa.string()),
            ("amount", pa.string()),
            ("ingested_at", pa.string()),
        ]
    )
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
