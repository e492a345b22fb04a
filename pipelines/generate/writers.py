"""Write one day's records as JSON Lines (optionally gzipped) or as typed Parquet."""

from __future__ import annotations

import gzip
import json
import random
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from pipelines.generate.base import Delivered, EventKind


def write_day(
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
