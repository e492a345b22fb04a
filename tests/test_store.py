"""The store stage against a writer that commits between a batch's dedupe and its store."""

from __future__ import annotations

import json
from pathlib import Path

from pipelines.run.context import RunContext, RunRequest
from pipelines.run.fold import fold
from pipelines.run.ingest import ingest
from pipelines.run.plan import plan
from pipelines.run.preflight import preflight
from pipelines.run.store import store
from tests.helpers import backfill, table_states
from tests.reference import reference_backfill


def _line(event_id: str, amount: str, ingested_day: int) -> str:
    return json.dumps(
        {
            "event_id": event_id,
            "key": "k",
            "seq": int(event_id[1:]),
            "event_time": "2026-01-01T00:00:00Z",
            "op": "add",
            "amount": amount,
            "ingested_at": f"2026-01-{ingested_day:02d}T00:00:00Z",
        }
    )


def _source(folder: Path, lines: list[str]) -> str:
    folder.mkdir(parents=True)
    (folder / "part-0.jsonl").write_text("".join(f"{line}\n" for line in lines))
    return str(folder)


def test_a_batch_that_met_no_stored_copy_still_beats_one_stored_meanwhile(spark, config, tmp_path):
    """The batch is deduplicated against an empty events table, so it only inserts; another
    run stores an older copy of one of its events before it does: the batch's newer copy
    must still replace it, and each event be stored once."""
    table = tmp_path / "state"
    ours = [_line("e1", "5", ingested_day=2), _line("e2", "7", ingested_day=2)]
    theirs = [_line("e1", "3", ingested_day=1)]
    request = RunRequest(sources=[_source(tmp_path / "ours", ours)], table=str(table))
    ctx = RunContext.open(spark, config, request, progress=lambda message: None)
    tables = preflight(ctx)
    batch = ingest(ctx, tables)
    assert (batch.replacing, tables.events_version) == (0, None)

    backfill(spark, config, [_source(tmp_path / "theirs", theirs)], table)  # meanwhile

    stored = store(ctx, tables, batch)
    assert (stored.events_inserted, stored.events_replaced) == (1, 1)
    events = spark.read.format("delta").load(f"{table}_events").collect()
    assert sorted((r["event_id"], str(r["amount"])) for r in events) == [
        ("e1", "5.000000000"),
        ("e2", "7.000000000"),
    ]
    folded = fold(ctx, tables, plan(ctx, tables, batch, stored))
    assert folded.keys.total == 1
    backfill(spark, config, [tmp_path / "ours"], table)  # the next run converges
    assert table_states(spark, table) == reference_backfill(ours + theirs).states
