"""Small helpers shared by the tests."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hypothesis import strategies as st
from pyspark.sql import SparkSession

from pipelines.config import S3Config
from pipelines.fingerprint import Fingerprint, recorded
from pipelines.io.sources import DateWindow
from pipelines.io.tables import describe
from pipelines.report import RunReport
from pipelines.run import RunRequest, run_backfill
from pipelines.transforms.fingerprint import fingerprint_of
from tests.reference import reference_backfill

# `make soak` (BACKFILL_SOAK=1) runs the property tests over many more generated examples.
SOAK = os.environ.get("BACKFILL_SOAK") == "1"


def examples(ci: int, soak: int) -> int:
    """How many examples a Spark-backed property test draws: `ci` in `make test`, `soak` in
    `make soak`."""
    return soak if SOAK else ci


def backfill(
    spark: SparkSession,
    config,
    sources: list[Path | str],
    table: Path | str,
    window: DateWindow | None = None,
    dry_run: bool = False,
    txn: tuple[str, int] | None = None,
    full: bool = False,
) -> RunReport:
    request = RunRequest(
        full=full,
        sources=[str(s) for s in sources],
        table=str(table),
        quarantine_table=f"{table}_quarantine",
        window=window or DateWindow(),
        dry_run=dry_run,
        txn=txn,
    )
    return run_backfill(spark, config, request, progress=lambda message: None)


def table_states(
    spark: SparkSession, table: Path | str, version: int | None = None
) -> dict[str, dict[str, Any]]:
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", version)
    rows = reader.load(str(table)).collect()  # test tables are small
    return {r["key"]: {k: _aware(v) for k, v in r.asDict().items() if k != "key"} for r in rows}


def delta_rs_states(table: Path | str, version: int | None = None) -> dict[str, dict[str, Any]]:
    """`table_states` read with delta-rs, no Spark: each key's row without its key."""
    from deltalake import DeltaTable

    rows = DeltaTable(str(table), version=version).to_pyarrow_table().to_pylist()
    return {row.pop("key"): row for row in rows}


def _aware(value: Any) -> Any:
    """Spark returns timestamps as naive local datetimes; make them aware, in UTC."""
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.astimezone(UTC)
    return value


def event_record(
    event_id: str, key: str, seq: int, op: str, *, ingested: int | None = 1, **fields: Any
) -> dict[str, Any]:
    """One raw event: it happened at second `seq % 60` of 2026-01-01 and reached the lake on
    2026-01-<ingested> (None: no `ingested_at`). `fields` adds the fold's own (`amount`,
    `data`, `quantity`, extra ones) or replaces a default (`event_time`, `ingested_at`); a
    field given as None is left out."""
    record: dict[str, Any] = {
        "event_id": event_id,
        "key": key,
        "seq": seq,
        "event_time": f"2026-01-01T00:00:{seq % 60:02d}Z",
        "op": op,
    }
    if ingested is not None:
        record["ingested_at"] = f"2026-01-{ingested:02d}T00:00:00Z"
    record.update(fields)
    return {name: value for name, value in record.items() if value is not None}


def event_line(event_id: str, key: str, seq: int, op: str, **fields: Any) -> str:
    """`event_record` as the JSON line a source file holds."""
    return json.dumps(event_record(event_id, key, seq, op, **fields))


@st.composite
def balance_event(
    draw: st.DrawFn, number: int, max_seq: int, amounts: st.SearchStrategy[str]
) -> dict[str, Any]:
    """The `number`th event of a generated balance log, as `event_line`'s arguments: event id
    `e<number>`, one of three keys, any seq up to `max_seq` and any op, at minute `number`,
    reaching the lake on 2026-01-02 at that minute."""
    return {
        "event_id": f"e{number}",
        "key": draw(st.sampled_from(["a", "b", "c"])),
        "seq": draw(st.integers(min_value=1, max_value=max_seq)),
        "op": draw(st.sampled_from(["add", "subtract", "set"])),
        "amount": draw(amounts),
        "event_time": f"2026-01-01T00:{number % 60:02d}:00Z",
        "ingested_at": f"2026-01-02T00:{number % 60:02d}:00Z",
    }


def write_night(root: Path, night: int, lines: list[str]) -> Path:
    """`lines` as the night's partition `root/events/dt=2026-02-<night>`; returns it."""
    day = root / "events" / f"dt=2026-02-{night:02d}"
    day.mkdir(parents=True, exist_ok=True)
    (day / "part-0.jsonl").write_text("".join(f"{line}\n" for line in lines))
    return day


def kept_fingerprint(spark: SparkSession, table: Path) -> Fingerprint | None:
    """The fingerprint the log gives the table's latest version (contract section 10)."""
    info = describe(spark, str(table), "state table", S3Config())
    assert info is not None
    found = recorded(info.commit_infos(), info.version)
    return found.fingerprint if found else None


def rows_fingerprint(spark: SparkSession, table: Path) -> Fingerprint:
    """The fingerprint of the table's latest rows, computed from scratch."""
    return fingerprint_of(spark.read.format("delta").load(str(table)))


def assert_every_version_verifies(spark: SparkSession, table: Path | str) -> None:
    """Each version's rows hash to the fingerprint the log gives it (contract section 10)."""
    info = describe(spark, str(table), "state table", S3Config())
    assert info is not None
    commits = info.commit_infos()
    for version in range(info.version + 1):
        found = recorded(commits, version)
        rows_df = spark.read.format("delta").option("versionAsOf", version).load(str(table))
        assert found is not None and found.fingerprint == fingerprint_of(rows_df), version


def assert_any_nights_equal_one_run(
    spark: SparkSession,
    config,
    lines: list[str],
    data: Any,
    max_cuts: int,
    fold: str = "balance",
    states: Callable[[SparkSession, Path], dict[str, Any]] = table_states,
) -> None:
    """`lines` shuffled, cut into up to `max_cuts + 1` nights and delivered in any order (all
    drawn from hypothesis' `data`): after each night the state equals the reference over what
    was delivered, and at the end it equals one run over everything."""
    shuffled = data.draw(st.permutations(lines))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(shuffled)), min_size=1, max_size=max_cuts)))
    nights = [shuffled[lo:hi] for lo, hi in zip([0, *cuts], [*cuts, len(shuffled)], strict=True)]
    order = data.draw(st.permutations(range(len(nights))))
    with tempfile.TemporaryDirectory() as tmp:
        root, table = Path(tmp), Path(tmp) / "state"
        delivered: list[str] = []
        for night in order:
            backfill(spark, config, [write_night(root, night + 1, nights[night])], table)
            delivered += nights[night]
            now = states(spark, table) if (table / "_delta_log").exists() else {}
            assert now == reference_backfill(delivered, fold).states
            if now:  # the fingerprint each night kept is the one of the rows it left
                assert kept_fingerprint(spark, table) == rows_fingerprint(spark, table)
        one_run = backfill(spark, config, [root / "events"], root / "one")
        assert states(spark, root / "one") == states(spark, table)
        assert kept_fingerprint(spark, root / "one") == kept_fingerprint(spark, table)
        assert one_run.counts.valid_unique == reference_backfill(lines, fold).valid_unique
