"""An independent, plain-Python backfill: the oracle the Spark pipeline is checked against.

It shares no code with `pipelines`: it parses with the standard `json` module, checks the
contract's rules in its own words, deduplicates with a dict, sorts and folds one event at a
time: `balance` (contract section 4) with `decimal.Decimal`, `snapshot` (section 8) with
dicts, JSON Merge Patch as RFC 7386 writes it, and its own canonical JSON text.
"""

from __future__ import annotations

import gzip
import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_DOWN, Decimal, InvalidOperation, localcontext
from pathlib import Path
from typing import Any

COMMON = ("event_id", "key", "seq", "event_time", "op")
# Per fold: its ops, and the fields every one of its events must have beyond the common ones.
OPS = {"balance": {"add", "subtract", "set"}, "snapshot": {"upsert", "patch", "delete"}}
REQUIRED = {"balance": (*COMMON, "amount"), "snapshot": COMMON}
NEEDS_DATA = {"upsert", "patch"}
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
                present = {k: v for k, v in row.items() if v is not None}
                lines.append(json.dumps(present, default=_typed_value))
    return [line for line in lines if line.strip()]


def _typed_value(value: Any) -> str:
    """A typed Parquet value as JSON text holds it: a decimal as its digits, a timestamp in
    ISO-8601."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"no JSON for {type(value).__name__}")


def reference_backfill(lines: list[str], fold: str = "balance") -> ReferenceResult:
    """The run report's counts and the state table of `fold` (`balance` or `snapshot`) over
    `lines`. A snapshot state's `data` is `canonical_json` text; a deleted key has no row."""
    result = ReferenceResult(states={}, records_read=len(lines))
    copies: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for line in lines:
        event, reason = _validate(line, fold)
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
    fold_key = _fold_balance if fold == "balance" else _fold_snapshot
    states = {
        key: fold_key(sorted(evs, key=lambda e: (e["seq"], e["event_id"])))
        for key, evs in by_key.items()
    }
    result.states = {key: state for key, state in states.items() if state is not None}
    return result


def _fold_balance(ordered: list[dict[str, Any]]) -> dict[str, Any]:
    balance = Decimal(0)
    with localcontext() as ctx:
        ctx.prec = 60  # exact: the default 28 digits would round large sums
        for e in ordered:
            if e["op"] == "set":
                balance = e["amount"]
            elif e["op"] == "add":
                balance += e["amount"]
            else:
                balance -= e["amount"]
    return {"balance": balance.quantize(Decimal("1e-9")), **_sequence_columns(ordered)}


def _fold_snapshot(ordered: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The entity after its events, or None when the last one deletes it."""
    entity: Any = None
    for e in ordered:
        if e["op"] == "upsert":
            entity = e["data"]
        elif e["op"] == "patch":  # on an absent entity it applies to {}
            entity = merge_patch({} if entity is None else entity, e["data"])
        else:
            entity = None
    if entity is None:
        return None
    return {"data": canonical_json(entity), **_sequence_columns(ordered)}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386, section 2, as its pseudo-code reads."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for name, value in patch.items():
        if value is None:
            result.pop(name, None)
        else:
            result[name] = merge_patch(result.get(name), value)
    return result


def canonical_json(value: Any) -> str:
    """One text per JSON value: compact, members sorted, a number by its value (`1.50`,
    `1.5` and `15e-1` alike, `2.0` as `2`), so equal values give equal text."""
    if isinstance(value, dict):
        members = (f"{json.dumps(k)}:{canonical_json(value[k])}" for k in sorted(value))
        return "{" + ",".join(members) + "}"
    if isinstance(value, list):
        return "[" + ",".join(canonical_json(item) for item in value) + "]"
    if isinstance(value, Decimal):
        number = value.normalize()
        return str(int(number)) if number == number.to_integral_value() else f"{number:f}"
    return json.dumps(value)  # strings, integers, true, false, null


def canonical_json_text(text: str) -> str:
    """`canonical_json` of the value a JSON text holds: for comparing texts by meaning."""
    return canonical_json(json.loads(text, parse_float=Decimal))


def _sequence_columns(ordered: list[dict[str, Any]]) -> dict[str, Any]:
    last = ordered[-1]
    return {
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
    """What identical copies share. `data` by its value, however written; a delete's `data`
    is ignored (contract section 8), so it is no part of a delete's content."""
    if "amount" in e:
        return (e["key"], e["seq"], e["event_time"], e["op"], e["amount"])
    data = None if e["op"] == "delete" else canonical_json(e["data"])
    return (e["key"], e["seq"], e["event_time"], e["op"], data)


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise ValueError("duplicate key")
    return dict(pairs)


def _no_constants(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def _parse(text: str) -> Any:
    """Strict JSON: no repeated member names, no NaN or Infinity, numbers as decimals."""
    return json.loads(
        text,
        parse_float=Decimal,
        object_pairs_hook=_reject_duplicate_keys,
        parse_constant=_no_constants,
    )


def _validate(line: str, fold: str = "balance") -> tuple[dict[str, Any], str | None]:
    try:
        doc = _parse(line)
    except (ValueError, RecursionError):
        return {}, "malformed_json"
    if not isinstance(doc, dict):
        return {}, "malformed_json"
    for name in REQUIRED[fold]:
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
    if not isinstance(doc["op"], str) or doc["op"] not in OPS[fold]:
        return {}, "unknown_op"
    payload, reason = _amount(doc) if fold == "balance" else _data(doc)
    if reason:
        return {}, reason
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
        **payload,
        "ingested_at": ingested_at,
    }, None


def _data(doc: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """`data`: a JSON object, or a string holding one; required by `upsert` and `patch`."""
    if doc["op"] == "delete":  # its `data`, if any, is ignored: neither checked nor kept
        return {"data": None}, None
    data = doc.get("data")
    if data is None:
        return {"data": None}, "missing_field:data" if doc["op"] in NEEDS_DATA else None
    if isinstance(data, str):
        try:
            data = _parse(data)
        except (ValueError, RecursionError):
            return {}, "bad_type:data"
    if not isinstance(data, dict):
        return {}, "bad_type:data"
    return {"data": data}, None


def _amount(doc: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    amount = doc["amount"]
    if isinstance(amount, bool) or not isinstance(amount, (int, Decimal, str)):
        return {}, "bad_type:amount"
    if isinstance(amount, str) and not NUMBER.match(amount):
        return {}, "bad_type:amount"
    try:
        value = Decimal(str(amount))
    except InvalidOperation:
        return {}, "bad_type:amount"
    # 18 integer digits at most: the first significant digit below 10**18 (`adjusted` is its
    # power of ten; no arithmetic, which would overflow on an exponent like 1e999999999999).
    if not value.is_finite() or (not value.is_zero() and value.adjusted() >= 18):
        return {}, "amount_out_of_range"
    if value != value.quantize(Decimal("1e-9"), rounding=ROUND_DOWN):
        return {}, "amount_out_of_range"
    return {"amount": value}, None


def _seq(value: Any) -> int | None:
    """Contract section 1: an integer >= 1. Written as an integer: a JSON integer, or a
    string of digits; a JSON number with a fraction or an exponent (`1.0`, `1e0`) is not one,
    as `1.5` is not, whatever its value."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or not 1 <= value < 2**63:
        return None
    return value


def _time(value: Any) -> datetime | None:
    """Contract section 1: an ISO-8601 date-time, in the extended form: `YYYY-MM-DD`, then
    optionally `T` or a space and `hh:mm`, `hh:mm:ss` or `hh:mm:ss.f` (1 to 9 digits), then
    optionally a zone, `Z` or an offset `+hh`, `+hhmm` or `+hh:mm` up to 18 hours (UTC when
    there is none) after a time. Read field by field, with no pattern shared with the
    pipeline; a field out of its calendar range (month 13, February 30, hour 24), or an
    instant before year 1 or after 9999 in UTC (which Python's datetime cannot hold), makes
    it no date-time."""
    if not isinstance(value, str):
        return None
    text, offset = _split_zone(value)
    if offset is None:
        return None
    date, separator, clock = text[:10], text[10:11], text[11:]
    if text != value and not separator:
        return None  # a zone belongs to a time of day, not to a date alone
    if len(date) != 10 or date[4] != "-" or date[7] != "-":
        return None
    year, month, day = date[:4], date[5:7], date[8:]
    hour = minute = second = "00"
    fraction = ""
    if separator:
        if separator not in "T ":
            return None
        clock, dot, fraction = clock.partition(".")
        if dot and not 1 <= len(fraction) <= 9:
            return None
        parts = clock.split(":")
        if len(parts) not in (2, 3) or (dot and len(parts) != 3):
            return None
        hour, minute = parts[0], parts[1]
        second = parts[2] if len(parts) == 3 else "00"
    fields = (year, month, day, hour, minute, second)
    if not all(_digits(f) for f in fields) or (fraction and not _digits(fraction)):
        return None
    if any(len(f) != 2 for f in fields[1:]):
        return None
    try:
        moment = datetime(*(int(f) for f in fields), int(fraction.ljust(6, "0")[:6] or 0), UTC)
        return moment - offset
    except (ValueError, OverflowError):
        return None


def _split_zone(text: str) -> tuple[str, timedelta | None]:
    """`text` without its zone, and the zone's offset from UTC (None when it is not one)."""
    if text.endswith("Z"):
        return text[:-1], timedelta(0)
    sign_at = max(text.rfind("+"), text.rfind("-"))
    if sign_at <= 9:  # the date's own dashes, or no sign at all: no zone
        return text, timedelta(0)
    zone = text[sign_at + 1 :]
    if len(zone) == 5 and zone[2] == ":":
        zone = zone[:2] + zone[3:]
    if len(zone) not in (2, 4):
        return text, None
    hours, minutes = zone[:2], zone[2:] or "00"
    if not _digits(hours) or not _digits(minutes) or int(minutes) > 59:
        return text, None
    offset = timedelta(hours=int(hours), minutes=int(minutes))
    if offset > timedelta(hours=18):
        return text, None
    return text[:sign_at], -offset if text[sign_at] == "-" else offset


def _digits(text: str) -> bool:
    """ASCII digits only: `str.isdigit` would also take other scripts' digits."""
    return bool(text) and all("0" <= c <= "9" for c in text)
