"""Generate a raw event log with chosen faults, seeded so every run is reproducible.

Events are spread over `days` of `dt=YYYY-MM-DD` partitions (the day a copy was ingested),
each day split into several files. Faults, each at its own rate:
identical duplicates (re-delivered copies), conflicting duplicates (same id, other content),
late events (ingested days later, so they land in a later partition), lost events (never
written: holes in `seq`), disorder (lines shuffled within a file), and garbage lines.

Two kinds of log, one per built-in fold: `balance` events (`add`, `subtract`, `set` with an
`amount`) and `snapshot` events (CDC-style `upsert` and `patch` with a `data` object, `delete`
without). A snapshot log has the same faults, which there also give late deletes (a delete
for a `seq` lower than events delivered before it), re-delivered deletes, copies whose `data`
is the same object written another way (member order, spacing, `1.50` for `1.5`, a string
holding the object), and garbage the snapshot fold rejects (`data` missing or not an object).
"""

from __future__ import annotations

import gzip
import json
import random
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

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
SNAPSHOT_GARBAGE_KINDS = (
    "truncated",
    "not_json",
    "missing_field",
    "bad_seq",
    "unknown_op",
    "bad_event_time",
    "not_an_object",
    "missing_data",  # an upsert or a patch without `data`: missing_field:data
    "bad_data",  # `data` that is not an object, nor a string holding one: bad_type:data
)
# How a snapshot event's `data` is written: the same object, other text (see `render_data`).
DATA_STYLES = ("object", "spaced", "text")


@dataclass(frozen=True)
class FaultRates:
    duplicate: float = 0.03
    conflict: float = 0.005
    late: float = 0.02
    lost: float = 0.002
    disorder: float = 0.2
    garbage: float = 0.01


@dataclass(frozen=True)
class Delivered:
    """One copy of an event as delivered to the lake: the fields every event has."""

    event_id: str
    key: str
    seq: int
    event_time: datetime
    op: str
    ingested_at: datetime

    def to_json(self) -> str:
        return (
            f'{{"event_id":"{self.event_id}","key":"{self.key}","seq":{self.seq},'
            f'"event_time":"{_iso(self.event_time)}","op":"{self.op}"{self.payload_json()},'
            f'"ingested_at":"{_iso(self.ingested_at)}"}}'
        )

    def payload_json(self) -> str:
        """The fold's own members as JSON, each after a comma."""
        return ""

    def payload_value(self) -> Any:
        """The fold's own field as its Parquet column holds it."""
        return None


@dataclass(frozen=True)
class Event(Delivered):
    """A balance event: an amount, written as a JSON number or as a string."""

    amount: Decimal
    amount_as_string: bool = False

    def payload_json(self) -> str:
        amount = f'"{self.amount}"' if self.amount_as_string else str(self.amount)
        return f',"amount":{amount}'

    def payload_value(self) -> Any:
        return self.amount


@dataclass(frozen=True)
class SnapshotEvent(Delivered):
    """A snapshot event: `data` (None on a delete), written in one of `DATA_STYLES`."""

    data: dict[str, Any] | None = None
    data_style: str = "object"

    def payload_json(self) -> str:
        return "" if self.data is None else f',"data":{render_data(self.data, self.data_style)}'

    def payload_value(self) -> Any:
        return None if self.data is None else render_data(self.data, "object")


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
    if fold not in EVENT_KINDS:
        raise ValueError(f"no generator for fold {fold!r}; known: {', '.join(EVENT_KINDS)}")
    kind = EVENT_KINDS[fold]
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
        log.files += _write_day(
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
    key_names = [f"{kind.key_prefix}-{i:06d}" for i in range(n_keys)]
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


class EventKind:
    """What one fold's events carry beyond the common fields, and what their faults change."""

    event_class: ClassVar[type[Delivered]]
    key_prefix: ClassVar[str]
    column: ClassVar[str]  # the fold's own field
    parquet_type: ClassVar[str]  # its Parquet column's type: decimal or string
    garbage_kinds: ClassVar[tuple[str, ...]]
    unknown_ops: ClassVar[tuple[str, ...]]
    valid_payload: ClassVar[dict[str, Any]]  # `op` and payload of a garbage line's base

    def content(self, rng: random.Random, seq: int) -> dict[str, Any]:
        """`op` and the payload of a new event with this `seq`."""
        raise NotImplementedError

    def style(self, rng: random.Random) -> dict[str, Any]:
        """How the payload is written."""
        raise NotImplementedError

    def conflicting(self, rng: random.Random, event: Any) -> dict[str, Any]:
        """What a copy with the same `event_id` and other content changes."""
        raise NotImplementedError

    def redelivered(self, rng: random.Random, event: Any, log: GeneratedLog) -> dict[str, Any]:
        """What an identical copy changes in how it is written: nothing by default."""
        return {}


class BalanceEvents(EventKind):
    """`set` first, then mostly `add` and `subtract`, amounts with cents."""

    event_class = Event
    key_prefix = "acct"
    column = "amount"
    parquet_type = "decimal"
    garbage_kinds = GARBAGE_KINDS
    unknown_ops = ("multiply", "ADD", "")
    valid_payload: ClassVar[dict[str, Any]] = {"op": "add", "amount": "1.00"}

    def content(self, rng: random.Random, seq: int) -> dict[str, Any]:
        return {"op": _pick_op(rng, seq), "amount": Decimal(rng.randint(1, 5_000_000)).scaleb(-2)}

    def style(self, rng: random.Random) -> dict[str, Any]:
        return {"amount_as_string": rng.random() < 0.5}

    def conflicting(self, rng: random.Random, event: Event) -> dict[str, Any]:
        return {"amount": event.amount + Decimal(rng.randint(1, 999)).scaleb(-2)}


class SnapshotEvents(EventKind):
    """Customer records: `upsert` first, then mostly `patch`, now and then a `delete`."""

    event_class = SnapshotEvent
    key_prefix = "cust"
    column = "data"
    parquet_type = "string"
    garbage_kinds = SNAPSHOT_GARBAGE_KINDS
    unknown_ops = ("merge", "UPSERT", "")
    valid_payload: ClassVar[dict[str, Any]] = {"op": "upsert", "data": {"name": "junk"}}

    def content(self, rng: random.Random, seq: int) -> dict[str, Any]:
        op = _pick_snapshot_op(rng, seq)
        data = None if op == "delete" else _entity(rng) if op == "upsert" else _patch(rng)
        return {"op": op, "data": data}

    def style(self, rng: random.Random) -> dict[str, Any]:
        return {"data_style": rng.choice(DATA_STYLES)}

    def conflicting(self, rng: random.Random, event: SnapshotEvent) -> dict[str, Any]:
        if event.data is None:  # the other copy of a delete says the entity lives on
            return {"op": "upsert", "data": _entity(rng)}
        return {"data": {**event.data, "revision": rng.randint(2, 99)}}

    def redelivered(
        self, rng: random.Random, event: SnapshotEvent, log: GeneratedLog
    ) -> dict[str, Any]:
        if event.data is None:
            log.injected["redelivered_delete"] += 1
            return {}
        log.injected["rewritten_data"] += 1  # the same object in other text: identical copies
        return {"data_style": rng.choice([s for s in DATA_STYLES if s != event.data_style])}


EVENT_KINDS: dict[str, EventKind] = {"balance": BalanceEvents(), "snapshot": SnapshotEvents()}


def _pick_op(rng: random.Random, seq: int) -> str:
    if seq == 1:
        return "set"
    roll = rng.random()
    return "set" if roll < 0.03 else "subtract" if roll < 0.35 else "add"


def _pick_snapshot_op(rng: random.Random, seq: int) -> str:
    roll = rng.random()
    if seq == 1:
        return "upsert" if roll < 0.9 else "patch"  # a patch of an absent entity applies to {}
    return "delete" if roll < 0.1 else "upsert" if roll < 0.3 else "patch"


_NAMES = ("Ada", "Bo", "Chloé", "Dmitri", "Eun-ji", "Femi")
_CITIES = ("Paris", "Lagos", "Osaka", "Lima", "Oslo")
_STATUSES = ("active", "suspended", "closed")
_TAGS = ("vip", "new", "b2b", "churn-risk")
_PATCHABLE = ("status", "credit_limit", "address", "nickname", "tags")
_NOT_OBJECTS: tuple[Any, ...] = ("a name", [1, 2], 42, True, "[1, 2]", '{"name": ')


def _entity(rng: random.Random) -> dict[str, Any]:
    """A whole customer record: a nested object, a list, money with cents, maybe a null."""
    entity: dict[str, Any] = {
        "name": rng.choice(_NAMES),
        "status": rng.choice(_STATUSES),
        "credit_limit": _money(rng),
        "address": {"city": rng.choice(_CITIES), "zip": f"{rng.randint(1000, 99999):05d}"},
        "tags": rng.sample(_TAGS, rng.randint(0, 2)),
    }
    if rng.random() < 0.3:
        entity["nickname"] = rng.choice((None, "Ace", "Z"))  # an upsert keeps a null member
    return entity


def _patch(rng: random.Random) -> dict[str, Any]:
    """A JSON Merge Patch of one to three members; a null removes its member."""
    members = rng.sample(_PATCHABLE, rng.randint(1, 3))
    return {member: _patch_value(rng, member) for member in members}


def _patch_value(rng: random.Random, member: str) -> Any:
    if member == "status":
        return rng.choice(_STATUSES)
    if member == "credit_limit":
        return _money(rng)
    if member == "address":  # merged into the address, or the address removed
        return rng.choice(({"city": rng.choice(_CITIES)}, {"zip": None}, None))
    if member == "nickname":
        return rng.choice((None, "Ace"))
    return rng.sample(_TAGS, rng.randint(0, 2))  # a list is replaced whole


def _money(rng: random.Random) -> Decimal:
    """Cents in steps of 5: every other value written with a trailing zero (`12.50`)."""
    return Decimal(rng.randint(0, 20_000) * 5).scaleb(-2)


def render_data(data: dict[str, Any], style: str) -> str:
    """`data` as JSON text in a style: `object` compact, members in order, numbers as generated
    (`12.50`); `spaced` with blanks, members reversed, numbers trimmed (`12.5`); `text` a JSON
    string holding the compact object. The same object each time."""
    if style == "text":
        return json.dumps(_json_text(data, spaced=False))
    return _json_text(data, spaced=style == "spaced")


def _json_text(value: Any, spaced: bool) -> str:
    comma = " , " if spaced else ","
    if isinstance(value, dict):
        colon = " : " if spaced else ":"
        members = reversed(value.items()) if spaced else value.items()
        inner = comma.join(f"{json.dumps(k)}{colon}{_json_text(v, spaced)}" for k, v in members)
        return f"{{ {inner} }}" if spaced else f"{{{inner}}}"
    if isinstance(value, list):
        return "[" + comma.join(_json_text(item, spaced) for item in value) + "]"
    if isinstance(value, Decimal):
        return format(value.normalize(), "f") if spaced else str(value)
    return json.dumps(value)


def _garbage_line(rng: random.Random, garbage: str, day: date, kind: EventKind) -> str:
    good: dict[str, Any] = {
        "event_id": f"junk-{rng.getrandbits(48):012x}",
        "key": f"{kind.key_prefix}-{rng.randrange(1000):06d}",
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


def _write_day(
    out_dir: Path,
    day: date,
    records: list[str | Delivered],
    rng: random.Random,
    files_per_day: int,
    data_format: str,
    gzip_files: bool,
    kind: EventKind,
) -> list[str]:
    part_dir = out_dir / f"dt={day.isoformat()}"
    part_dir.mkdir(parents=True, exist_ok=True)
    chunks: list[list[str | Delivered]] = [[] for _ in range(files_per_day)]
    for record in records:
        chunks[rng.randrange(files_per_day)].append(record)
    written = []
    for index, chunk in enumerate(chunks):
        if not chunk:
            continue
        name = f"part-{rng.getrandbits(32):08x}-{index:03d}"
        if data_format == "parquet":
            path = part_dir / f"{name}.parquet"
            _write_parquet(path, chunk, kind)
        else:
            path = part_dir / (f"{name}.jsonl.gz" if gzip_files else f"{name}.jsonl")
            text = "\n".join(r if isinstance(r, str) else r.to_json() for r in chunk) + "\n"
            if gzip_files:
                path.write_bytes(gzip.compress(text.encode("utf-8")))
            else:
                path.write_text(text, encoding="utf-8")
        written.append(str(path))
    return written


def _write_parquet(path: Path, chunk: list[str | Delivered], kind: EventKind) -> None:
    """The contract's types, as a typed lake holds them: timestamps, a 64-bit `seq`, the
    balance `amount` as a decimal (wide enough for amounts out of range), a snapshot's
    `data` as JSON text. Garbage no such column can hold becomes a missing value."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    column = kind.column
    amounts = kind.parquet_type == "decimal"
    rows = []
    for record in chunk:
        if isinstance(record, Delivered):
            rows.append(
                {
                    "event_id": record.event_id,
                    "key": record.key,
                    "seq": record.seq,
                    "event_time": record.event_time,
                    "op": record.op,
                    column: record.payload_value(),
                    "ingested_at": record.ingested_at,
                }
            )
            continue
        try:
            parsed = json.loads(record, parse_float=Decimal)
        except ValueError:
            parsed = None
        row = parsed if isinstance(parsed, dict) else {}
        seq, value = row.get("seq"), row.get(column)
        rows.append(
            {
                "event_id": _text(row.get("event_id")),
                "key": _text(row.get("key")),
                "seq": seq if type(seq) is int and -(2**63) <= seq < 2**63 else None,
                "event_time": _moment(row.get("event_time")),
                "op": _text(row.get("op")),
                column: _decimal(value) if amounts else _string_column(value),
                "ingested_at": _moment(row.get("ingested_at")),
            }
        )
    moment = pa.timestamp("us", tz="UTC")
    schema = pa.schema(
        [
            ("event_id", pa.string()),
            ("key", pa.string()),
            ("seq", pa.int64()),
            ("event_time", moment),
            ("op", pa.string()),
            (column, pa.decimal128(38, 18) if amounts else pa.string()),
            ("ingested_at", moment),
        ]
    )
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _string_column(value: Any) -> str | None:
    return value if value is None or isinstance(value, str) else json.dumps(value, default=str)


def _moment(value: Any) -> datetime | None:
    """A garbage line's time, where a timestamp column can hold it."""
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (AttributeError, ValueError):
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _decimal(value: Any) -> Decimal | None:
    """A garbage line's amount, where a decimal(38, 18) column can hold it."""
    try:
        amount = Decimal(value) if isinstance(value, (int, str, Decimal)) else None
    except ArithmeticError:
        return None
    if amount is None or not amount.is_finite() or abs(amount) >= Decimal(10) ** 20:
        return None
    quantized = amount.quantize(Decimal("1e-18"))
    return quantized if quantized == amount else None


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
