"""A conformance check for fold authors (contract section 8), to call from their own pytest:

    from pipelines.testing import check_fold

    def test_my_fold_conforms():
        check_fold(MyFold(), [
            {"event_id": "e1", "key": "sku-1", "seq": 1, "event_time": "2026-01-01T00:00:00Z",
             "op": "receive", "quantity": 10},
            ...
        ])

Events are written as they would appear in the raw log (one dict per JSON record, mapped
field names aside) and go through the pipeline's own validation first: an event the
pipeline would quarantine is refused here with its reason. No Spark is started.

`check_fold` raises `FoldCheckFailed` (an `AssertionError`) naming the first property broken:
- the rows match the fold's declared `state_schema`, one row per key, keys in order;
- any order of the same events, and any grouping of keys into batches, gives the same state:
  the pipeline sorts each key's events by `seq` and hands whole keys to `fold_keys`;
- `fold_keys` over many keys equals `fold_key` over each key alone;
- where the fold can resume: a key's stored state continued with its later events equals
  folding the whole history, at every cut, as when the log arrives over several runs, and
  `resume_keys` over many keys equals that too;
- `is_deleted`, where the fold has it, marks each row True or False.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial
from itertools import pairwise
from typing import Any

import pyarrow as pa
from pyspark.sql.pandas.types import to_arrow_type

from pipelines.config import FieldNames
from pipelines.folds.base import Fold
from pipelines.transforms.fold import SEQ_ORDER, conform
from pipelines.transforms.records import RecordChecker

_KEY_ORDER = [("key", "ascending"), *SEQ_ORDER]


class FoldCheckFailed(AssertionError):
    """A fold broke one of the properties the pipeline relies on."""


def events_table(fold: Fold, events: Iterable[Mapping[str, Any]]) -> pa.Table:
    """Raw events (dicts as in the log) as the typed Arrow table the fold receives, in the
    given order; `ValueError` for an event the pipeline would quarantine, with its reason."""
    checker = RecordChecker(FieldNames().as_dict(), fold.ops, fold.fields)
    columns: dict[str, list[Any]] = {name: [] for name in fold.event_columns}
    for event in events:
        raw = json.dumps(dict(event), default=_json_default)
        checked = checker.check(raw.encode())
        reason = checked[-2] or checked[-1]
        if reason is None and _timestamp(checked[3]) is None:
            reason = "bad_type:event_time"
        if reason is not None:
            raise ValueError(f"the pipeline would quarantine {raw} as {reason}")
        columns["event_id"].append(checked[0])
        columns["key"].append(checked[1])
        columns["seq"].append(checked[2])
        columns["event_time"].append(_timestamp(checked[3]))
        columns["op"].append(checked[4])
        for field, text in zip(fold.fields, checked[5:-3], strict=True):
            columns[field.name].append(_typed(field.type, text))
    repeated = sorted(i for i, n in Counter(columns["event_id"]).items() if n > 1)
    if repeated:
        raise ValueError(
            f"event_id {repeated[0]!r} appears more than once: the pipeline keeps one copy of "
            "each event before any fold runs, so give each event its own event_id"
        )
    # The Arrow types of the fields' Spark types, as Spark hands them to the fold.
    types = {f.name: to_arrow_type(f.spark_type, timezone="UTC") for f in fold.typed_fields}
    return pa.table({name: pa.array(columns[name], types[name]) for name in fold.event_columns})


def fold_events(fold: Fold, events: pa.Table | Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The state rows the pipeline would compute from scratch for these events (deleted keys
    included, with their deletion flag as `_deleted`), sorted by key."""
    table = events if isinstance(events, pa.Table) else events_table(fold, events)
    states = _fold_sorted(fold, table.sort_by(_KEY_ORDER))
    return _rows(fold, states)


def check_fold(
    fold: Fold, events: Iterable[Mapping[str, Any]], *, trials: int = 20, seed: int = 0
) -> list[dict[str, Any]]:
    """Check `fold` over `events` (see the module's docstring); returns the state rows.

    `trials` random orders, batchings and cuts are tried, from `seed`.
    """
    table = events_table(fold, events)
    if table.num_rows == 0:
        raise FoldCheckFailed("check_fold needs at least one event")
    rng = random.Random(seed)
    ordered = table.sort_by(_KEY_ORDER)
    keys = sorted(set(ordered["key"].to_pylist()))
    expected = _rows(fold, _fold_sorted(fold, ordered))
    if [row["key"] for row in expected] != keys:
        raise FoldCheckFailed(
            f"fold {fold.name} returned rows for keys {[r['key'] for r in expected]}, "
            f"expected one row per key, in order: {keys}"
        )
    per_key = {key: _rows(fold, _fold_one(fold, _events_of(ordered, key)))[0] for key in keys}
    for row in expected:
        if row != per_key[row["key"]]:
            raise FoldCheckFailed(
                f"fold {fold.name}: fold_keys over many keys gave {row}, fold_key over key "
                f"{row['key']!r} alone gave {per_key[row['key']]}"
            )
    for trial in range(trials):
        shuffled = table.take(rng.sample(range(table.num_rows), table.num_rows))
        batches = _random_batches(rng, shuffled.sort_by(_KEY_ORDER), keys)
        again = [row for batch in batches for row in _rows(fold, _fold_sorted(fold, batch))]
        if again != expected:
            raise FoldCheckFailed(
                f"fold {fold.name}: the same events in another order or batching (trial "
                f"{trial}, seed {seed}) gave {_first_difference(expected, again)}"
            )
    if fold.can_resume:
        for key in keys:
            _check_resume(fold, _events_of(ordered, key), per_key[key], rng, trials)
        for _ in range(trials):
            _check_resume_keys(fold, ordered, keys, per_key, rng)
    return expected


def _check_resume(
    fold: Fold, history: pa.Table, whole: dict[str, Any], rng: random.Random, trials: int
) -> None:
    """Resume at cuts where every later event has a higher `seq` than every earlier one: the
    only cuts the pipeline resumes at (any other re-folds the key's whole history)."""
    seqs = history["seq"].to_pylist()
    cuts = [i for i in range(1, len(seqs)) if seqs[i] > seqs[i - 1]]
    for cut in rng.sample(cuts, min(len(cuts), trials)):
        stored = _fold_one(fold, history.slice(0, cut))
        if fold.deletes and _deleted(fold, stored)[0]:
            continue  # a deleted key has no stored row: the pipeline re-folds it
        resumed = _rows(fold, _conformed(fold, partial(fold.resume, stored, history.slice(cut))))[0]
        if resumed != whole:
            raise FoldCheckFailed(
                f"fold {fold.name}: key {whole['key']!r} resumed after seq {seqs[cut - 1]} "
                f"gave {resumed}, folding its whole history gave {whole}"
            )


def _check_resume_keys(
    fold: Fold,
    ordered: pa.Table,
    keys: list[str],
    per_key: dict[str, dict[str, Any]],
    rng: random.Random,
) -> None:
    """`resume_keys` over many keys, each cut at a random resumable point, equals folding each
    key's whole history."""
    stored, tails, resumed_keys = [], [], []
    for key in keys:
        history = _events_of(ordered, key)
        seqs = history["seq"].to_pylist()
        cuts = [i for i in range(1, len(seqs)) if seqs[i] > seqs[i - 1]]
        if not cuts:
            continue
        cut = rng.choice(cuts)
        head = _fold_one(fold, history.slice(0, cut))
        if fold.deletes and _deleted(fold, head)[0]:
            continue
        stored.append(head)
        tails.append(history.slice(cut))
        resumed_keys.append(key)
    if not resumed_keys:
        return
    states, events = pa.concat_tables(stored), pa.concat_tables(tails)
    resumed = _rows(fold, _conformed(fold, partial(fold.resume_keys, states, events)))
    expected = [per_key[key] for key in resumed_keys]
    if resumed != expected:
        raise FoldCheckFailed(
            f"fold {fold.name}: resume_keys over many keys gave "
            f"{_first_difference(expected, resumed)}, resume key by key gives the whole "
            "history's rows"
        )


def _fold_sorted(fold: Fold, events: pa.Table) -> pa.Table:
    return _conformed(fold, partial(fold.fold_keys, events))


def _fold_one(fold: Fold, events: pa.Table) -> pa.Table:
    return _conformed(fold, partial(fold.fold_key, events))


def _conformed(fold: Fold, call: Callable[[], pa.Table]) -> pa.Table:
    """What `call` returns, checked against the fold's state schema as the pipeline does."""
    try:
        states = call()
        if not isinstance(states, pa.Table):
            raise FoldCheckFailed(f"fold {fold.name} returned {type(states).__name__}, not a Table")
        return conform(states, fold)
    except ValueError as exc:  # the pipeline's own checks of what a fold returns
        raise FoldCheckFailed(str(exc)) from exc


def _deleted(fold: Fold, states: pa.Table) -> list[bool]:
    flags = fold.is_deleted(states)
    if flags is None:
        return [False] * states.num_rows
    values = flags.to_pylist() if hasattr(flags, "to_pylist") else list(flags)
    if len(values) != states.num_rows or any(type(v) is not bool for v in values):
        raise FoldCheckFailed(
            f"fold {fold.name}: is_deleted must give True or False for each of the "
            f"{states.num_rows} rows, gave {values}"
        )
    return values


def _rows(fold: Fold, states: pa.Table) -> list[dict[str, Any]]:
    deleted = _deleted(fold, states)
    return [
        {**row, "_deleted": flag} for row, flag in zip(states.to_pylist(), deleted, strict=True)
    ]


def _events_of(ordered: pa.Table, key: str) -> pa.Table:
    keys = ordered["key"].to_pylist()
    start = keys.index(key)
    end = len(keys) - keys[::-1].index(key)
    return ordered.slice(start, end - start)


def _random_batches(rng: random.Random, ordered: pa.Table, keys: list[str]) -> list[pa.Table]:
    """The sorted events cut between keys into batches of random sizes."""
    starts = [ordered["key"].to_pylist().index(key) for key in keys]
    cuts = sorted(rng.sample(starts[1:], rng.randint(0, len(starts) - 1)))
    bounds = [0, *cuts, ordered.num_rows]
    return [ordered.slice(a, b - a) for a, b in pairwise(bounds)]


def _first_difference(expected: list[dict[str, Any]], found: list[dict[str, Any]]) -> str:
    for want, got in zip(expected, found, strict=False):
        if want != got:
            return f"{got} where it first gave {want}"
    return f"{len(found)} rows where it first gave {len(expected)}"


def _typed(kind: str, text: str | None) -> Any:
    if text is None:
        return None
    if kind == "decimal":
        return Decimal(text)
    if kind == "integer":
        return int(text)
    return text


def _timestamp(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot write {value!r} as JSON")
