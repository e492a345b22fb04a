"""An independent, plain-Python backfill: the oracle the Spark pipeline is checked against.

It shares no code with `pipelines`: it parses with the standard `json` module, checks the
contract's rules in its own words, deduplicates with a dict, sorts and folds one event at a
time with `decimal.Decimal`.
"""

from __future__ import annotations

import gzip
import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_DOWN, Decimal, InvalidOperation, localcontext
from pathlib import Path
from typing import Any

OPS = {"add", "subtract", "set"}
REQUIRED = ("event_id", "key", "seq", "event_time", "op", "amount")
ISO = re.compile(
    r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?)?(Z|[+-]\d{2}(:?\d{2})?)?$"
)
NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


@dataclass
class ReferenceResult:
    states: dict[str, dict[str, Any]]
    records_read: int = 0
    valid_unique: int = 0
    duplicates_dropped: int = 0
    reasons: Counter = field(default_factory=Counter)

    @property
    def quarantined(self) -> int:
        return sum(self.reasons.values())


def read_lines(root: Path) -> list[str]:
    """Every record of every data file under `root`, as JSON text."""
    lines: list[str] = []
    for path in sorted(root.rglob("*")):
        if not path.is_file() or any(
            p.startswith(("_", ".")) for p in path.relative_to(root).parts
        ):
            continue
        if path.name.endswith((".jsonl", ".json")):
            lines += path.read_text(encoding="utf-8").splitlines()
        elif path.name.endswith(".jsonl.gz"):
            lines += gzip.decompress(path.read_bytes()).decode("utf-8").splitlines()
        elif path.name.endswith(".parquet"):
            import pyarrow.parquet as pq

            for row in pq.read_table(path).to_pylist():
                lines.append(json.dumps({k: v for k, v in row.items() if v is not None}))
    return [line for line in lines if line.strip()]


def reference_backfill(lines: list[str]) -> ReferenceResult:
    result = ReferenceResult(states={}, records_read=len(lines))
    copies: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for line in lines:
        event, reason = _validate(line)
        if reason:
            result.reasons[reason] += 1
        else:
            copies[event["event_id"]].append(event)
    events = []
    for event_id, group in copies.items():
        winner = _winner(event_id, group)
        events.append(winner)
        for copy in group:
            if copy is winner:
                continue
            if _content(copy) == _content(winner):
                result.duplicates_dropped += 1
            else:
                result.reasons["conflicting_duplicate"] += 1
    result.valid_unique = len(events)
    by_key: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        by_key[event["key"]].append(event)
    result.states = {key: _fold(evs) for key, evs in by_key.items()}
    return result


def _fold(events: list[dict[str, Any]]) -> dict[str, Any]:
    balance = Decimal(0)
    ordered = sorted(events, key=lambda e: (e["seq"], e["event_id"]))
    with localcontext() as ctx:
        ctx.prec = 60  # exact: the default 28 digits would round large sums
        for e in ordered:
            if e["op"] == "set":
                balance = e["amount"]
            elif e["op"] == "add":
                balance += e["amount"]
            else:
                balance -= e["amount"]
    last = ordered[-1]
    return {
        "balance": balance.quantize(Decimal("1e-9")),
        "event_count": len(ordered),
        "last_seq": last["seq"],
        "missing_seq_count": last["seq"] - len({e["seq"] for e in ordered}),
        "last_event_time": last["event_time"],
    }


def _winner(event_id: str, group: list[dict[str, Any]]) -> dict[str, Any]:
    def age(e: dict[str, Any]) -> datetime:
        return e["ingested_at"] or datetime.min.replace(tzinfo=UTC)

    latest = max(age(e) for e in group)
    newest = [e for e in group if age(e) == latest]
    if len({_content(e) for e in newest}) > 1:
        raise ValueError(f"test data is ambiguous: {event_id} has conflicting copies of one age")
    return newest[0]


def _content(e: dict[str, Any]) -> tuple:
    return (e["key"], e["seq"], e["event_time"], e["op"], e["amount"])


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise ValueError("duplicate key")
    return dict(pairs)


def _no_constants(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def _validate(line: str) -> tuple[dict[str, Any], str | None]:
    try:
        doc = json.loads(
            line,
            parse_float=Decimal,
            object_pairs_hook=_reject_duplicate_keys,
            parse_constant=_no_constants,
        )
    except (ValueError, RecursionError):
        return {}, "malformed_json"
    if not isinstance(doc, dict):
        return {}, "malformed_json"
    for name in REQUIRED:
        if doc.get(name) is None:
            return {}, f"missing_field:{name}"
    for name in ("event_id", "key"):
        if not isinstance(doc[name], str) or not doc[name].strip():
            return {}, f"bad_type:{name}"
    seq = _seq(doc["seq"])
    if seq is None:
        return {}, "bad_seq"
    event_time = _time(doc["event_time"])
    if event_time is None:
        return {}, "bad_type:event_time"
    if not isinstance(doc["op"], str) or doc["op"] not in OPS:
        return {}, "unknown_op"
    amount = doc["amount"]
    if isinstance(amount, bool) or not isinstance(amount, (int, Decimal, str)):
        return {}, "bad_type:amount"
    if isinstance(amount, str) and not NUMBER.match(amount):
        return {}, "bad_type:amount"
    try:
        value = Decimal(str(amount))
    except InvalidOperation:
        return {}, "bad_type:amount"
    if not value.is_finite() or abs(value) >= Decimal(10) ** 18:
        return {}, "amount_out_of_range"
    if value != value.quantize(Decimal("1e-9"), rounding=ROUND_DOWN):
        return {}, "amount_out_of_range"
    ingested_at = None
    if doc.get("ingested_at") is not None:
        ingested_at = _time(doc["ingested_at"])
        if ingested_at is None:
            return {}, "bad_type:ingested_at"
    return {
        "event_id": doc["event_id"],
        "key": doc["key"],
        "seq": seq,
        "event_time": event_time,
        "op": doc["op"],
        "amount": value,
        "ingested_at": ingested_at,
    }, None


def _seq(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if (
        isinstance(value, Decimal)
        and value == value.to_integral_value()
        and "e" not in str(value).lower()
    ) or (isinstance(value, str) and value.isascii() and value.isdigit()):
        value = int(value)
    if not isinstance(value, int) or not 1 <= value < 2**63:
        return None
    return value


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not ISO.match(value):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)
