"""Per-key changes netted from a change feed held in Arrow: `backfill diff` without Spark.

`net_change_feed` answers as `pipelines.transforms.diff.net_change_feed` does on Spark, key for
key, with the values Spark's rows hand to Python (exact decimals, timestamps as naive local
times), so the printed and JSON output is the same whichever path made it. A pure function of
an Arrow table: the feed is read in `pipelines.io.delta_log`.
"""

from __future__ import annotations

import decimal
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import groupby
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

# The change feed's row types: a key's state before a commit, and after it.
BEFORE_TYPES = ("update_preimage", "delete")
AFTER_TYPES = ("update_postimage", "insert")
# Room for any difference of two decimal(38, s) values, which the default 28 digits round.
_EXACT = decimal.Context(prec=80)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def net_change_feed(
    feed: pa.Table, state_columns: list[str], measure: str | None
) -> list[dict[str, Any]]:
    """Each key whose state before its first commit in `feed` differs from its state after
    its last, ordered by key: `key`, `change` (insert / update / delete), `before` and
    `after` (the state columns, None where the key did not exist) and `delta` of `measure`.

    Works across RESTORE, which the feed shows as whole files deleted and re-inserted.
    """
    feed = feed.select(["key", "_change_type", "_commit_version", *state_columns])
    feed = feed.sort_by([("key", "ascending"), ("_commit_version", "ascending")])
    keys = feed["key"].to_pylist()
    change_types = feed["_change_type"].to_pylist()
    versions = feed["_commit_version"].to_pylist()
    columns = {name: spark_values(feed[name]) for name in state_columns}
    zero = _zero(feed.schema.field(measure).type) if measure else None

    def state(row: int) -> dict[str, Any]:
        return {name: columns[name][row] for name in state_columns}

    changes = []
    for key, grouped in groupby(range(feed.num_rows), key=keys.__getitem__):
        rows = list(grouped)
        first, last = versions[rows[0]], versions[rows[-1]]
        before = next(
            (state(r) for r in rows if versions[r] == first and change_types[r] in BEFORE_TYPES),
            None,
        )
        after = next(
            (state(r) for r in rows if versions[r] == last and change_types[r] in AFTER_TYPES),
            None,
        )
        if _same_state(before, after):
            continue
        change = "insert" if before is None else "delete" if after is None else "update"
        delta = None if measure is None else _delta(before, after, measure, zero)
        changes.append(
            {"key": key, "change": change, "before": before, "after": after, "delta": delta}
        )
    return changes


def diff_summary(
    changes: Iterable[tuple[str, int, Any]],
    from_version: int,
    to_version: int,
    method: str,
    measure: str | None,
) -> dict[str, Any]:
    """The summary `backfill diff` prints, from (kind of change, keys, sum of |delta|)."""
    totals = {"insert": 0, "update": 0, "delete": 0}
    total_abs = Decimal(0)
    for change, keys, abs_change in changes:
        totals[change] = keys
        total_abs += abs_change or 0
    return {
        "from_version": from_version,
        "to_version": to_version,
        "method": method,
        "keys_changed": sum(totals.values()),
        "keys_inserted": totals["insert"],
        "keys_updated": totals["update"],
        "keys_deleted": totals["delete"],
        "measure": measure,
        "total_abs_change": str(total_abs) if measure else None,
    }


def totals_by_change(changes: list[dict[str, Any]]) -> list[tuple[str, int, Any]]:
    """(kind of change, keys, sum of |delta|) of netted changes, for `diff_summary`."""
    totals: dict[str, tuple[int, Any]] = {}
    with decimal.localcontext(_EXACT):
        for row in changes:
            keys, abs_sum = totals.get(row["change"], (0, None))
            delta = row["delta"]
            if delta is not None:
                abs_sum = abs(delta) if abs_sum is None else abs_sum + abs(delta)
            totals[row["change"]] = (keys + 1, abs_sum)
    return [(change, keys, abs_sum) for change, (keys, abs_sum) in totals.items()]


def spark_time(micros: int) -> datetime:
    """Microseconds since the epoch as PySpark gives a TIMESTAMP: a naive local time."""
    return datetime.fromtimestamp(micros // 1_000_000).replace(microsecond=micros % 1_000_000)


def spark_values(column: pa.ChunkedArray | pa.Array) -> list[Any]:
    """A column's values as `Row.asDict(recursive=True)` of a Spark row holds them."""
    convert = _converter(column.type)
    values = column.to_pylist()
    return values if convert is None else [None if v is None else convert(v) for v in values]


def _converter(arrow_type: pa.DataType) -> Callable[[Any], Any] | None:
    """How one non-null value of `arrow_type` becomes Spark's; None where it already is."""
    import pyarrow as pa

    if pa.types.is_timestamp(arrow_type):
        # Spark's TIMESTAMP (zoned in Arrow) comes as local naive time, TIMESTAMP_NTZ as is.
        return _local_time if arrow_type.tz is not None else None
    if pa.types.is_binary(arrow_type) or pa.types.is_large_binary(arrow_type):
        return bytearray
    if pa.types.is_map(arrow_type):
        key, item = _converter(arrow_type.key_type), _converter(arrow_type.item_type)
        return lambda pairs: {_apply(key, k): _apply(item, v) for k, v in pairs}
    if pa.types.is_struct(arrow_type):
        fields = {f.name: _converter(f.type) for f in arrow_type}
        if not any(fields.values()):
            return None
        return lambda row: {name: _apply(fields[name], value) for name, value in row.items()}
    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type):
        element = _converter(arrow_type.value_type)
        return None if element is None else lambda items: [_apply(element, v) for v in items]
    return None


def _apply(convert: Callable[[Any], Any] | None, value: Any) -> Any:
    return value if convert is None or value is None else convert(value)


def _local_time(moment: datetime) -> datetime:
    return spark_time((moment - _EPOCH) // timedelta(microseconds=1))


def _zero(arrow_type: pa.DataType) -> Any:
    """The measure's 0 as Spark's `coalesce(measure, 0)` types it."""
    import pyarrow as pa

    if pa.types.is_decimal(arrow_type):
        return Decimal(0).scaleb(-arrow_type.scale)
    return 0.0 if pa.types.is_floating(arrow_type) else 0


def _delta(
    before: dict[str, Any] | None, after: dict[str, Any] | None, measure: str, zero: Any
) -> Any:
    old = before.get(measure) if before else None
    new = after.get(measure) if after else None
    with decimal.localcontext(_EXACT):
        return (zero if new is None else new) - (zero if old is None else old)


def _same_state(before: dict[str, Any] | None, after: dict[str, Any] | None) -> bool:
    """Spark's null-safe equality of two states: both absent, or every column equal (NaN
    equal to NaN, as Spark compares)."""
    if before is None or after is None:
        return before is after
    return all(_same(before[name], after[name]) for name in before)


def _same(left: Any, right: Any) -> bool:
    if isinstance(left, float) and isinstance(right, float) and left != left and right != right:
        return True
    return bool(left == right)
