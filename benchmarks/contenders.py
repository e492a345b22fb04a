"""The five ways to turn the same event log into per-key balances, each timed in isolation.

Run as `python -m benchmarks.contenders NAME DATA_DIR WORK_DIR`; prints one JSON line with the
seconds the work itself took (Spark's session start is excluded and reported apart) and what
the contender wants to report besides.
"""

from __future__ import annotations

import gzip
import json
import sys
import time
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

EVENT_FIELDS = ("event_id", "key", "seq", "event_time", "op", "amount", "ingested_at")


def _session(
    conf: dict[str, str] | None = None, master: str | None = None, data: Path | None = None
):
    """A session as `backfill run` would start it to read `data`: for a large run (as the
    config's `small_run_mb` has it) without the small-run JVM options."""
    from pipelines.config import load_config
    from pipelines.io.sources import DateWindow, is_large_run
    from pipelines.session import build_session

    config = load_config()
    large = data is not None and is_large_run([str(data)], DateWindow(), config.spark)
    if conf:
        config = config.with_overrides(**{"spark.conf": {**config.spark.conf, **conf}})
    if master:
        config = config.with_overrides(**{"spark.master": master})
    started = time.monotonic()
    spark = build_session(config, large_run=large)
    return spark, time.monotonic() - started


def spark_floor(data: Path, work: Path) -> dict[str, Any]:
    """Spark's floor: read the files with an explicit schema and write Parquet, nothing else."""
    spark, startup = _session(data=data)
    schema = (
        "event_id string, key string, seq long, event_time string, op string, "
        "amount string, ingested_at string"
    )
    started = time.monotonic()
    spark.read.schema(schema).json(str(data)).write.mode("overwrite").parquet(str(work / "floor"))
    return {"seconds": time.monotonic() - started, "spark_startup_seconds": startup}


def _backfill(spark, data: Path, table: Path, full: bool = False):
    from pipelines.config import load_config
    from pipelines.run import RunRequest, run_backfill

    request = RunRequest(
        sources=[str(data)], table=str(table), quarantine_table=f"{table}_q", full=full
    )
    return run_backfill(spark, load_config(), request, progress=lambda message: None)


def backfill_empty(data: Path, work: Path) -> dict[str, Any]:
    """The full backfill into an empty table, with Spark's event log on for its profile."""
    from benchmarks.profile import event_log_conf, step_profile

    spark, startup = _session(event_log_conf(work / "eventlog"), data=data)
    started = time.monotonic()
    report = _backfill(spark, data, work / "state")
    seconds = time.monotonic() - started
    spark.stop()  # closes the event log
    return {
        "seconds": seconds,
        "spark_startup_seconds": startup,
        "records_read": report.counts.records_read,
        "keys": report.keys.total,
        "profile": step_profile(work / "eventlog", seconds),
    }


def backfill_one_core(data: Path, work: Path) -> dict[str, Any]:
    """The same full backfill on `local[1]`: what a second core buys (and more, on a cluster)."""
    spark, startup = _session(master="local[1]", data=data)
    started = time.monotonic()
    report = _backfill(spark, data, work / "state_one_core")
    return {
        "seconds": time.monotonic() - started,
        "spark_startup_seconds": startup,
        "records_read": report.counts.records_read,
    }


def backfill_one_percent(data: Path, work: Path) -> dict[str, Any]:
    """The backfill into an existing table in which 1% of the keys are wrong.

    The existing table is the correct state (from `backfill_empty`, or a fresh backfill) with
    the balance of 1% of the keys off by one, written as one plain append: the wrong rows are
    scattered over every file, as a live worker leaves them, not gathered by a MERGE.
    """
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    from pipelines.folds import get_fold
    from pipelines.io.tables import ensure_table

    spark, startup = _session(data=data)
    correct, table = work / "state", work / "state_one_percent"
    if not DeltaTable.isDeltaTable(spark, str(correct)):
        _backfill(spark, data, correct)
    wrong = F.abs(F.xxhash64("key")) % 100 == 0
    live_df = spark.read.format("delta").load(str(correct))
    live_df = live_df.withColumn(
        "balance", F.when(wrong, F.col("balance") + 1).otherwise(F.col("balance"))
    )
    ensure_table(spark, str(table), get_fold("balance").state_schema)
    live_df.write.format("delta").mode("append").save(str(table))
    files_before = DeltaTable.forPath(spark, str(table)).detail().first()["numFiles"]
    started = time.monotonic()
    report = _backfill(spark, data, table, full=True)  # a table written before the events table
    seconds = time.monotonic() - started
    metrics = DeltaTable.forPath(spark, str(table)).history(1).first()["operationMetrics"]
    return {
        "seconds": seconds,
        "spark_startup_seconds": startup,
        "keys_corrected": report.keys.updated,
        "table_files": files_before,
        "files_removed": int(metrics.get("numTargetFilesRemoved", 0)),
        "files_added": int(metrics.get("numTargetFilesAdded", 0)),
        "deletion_vectors_added": int(metrics.get("numTargetDeletionVectorsAdded", 0)),
        "rows_copied": int(metrics.get("numTargetRowsCopied", 0)),
    }


def python_replay(data: Path, work: Path) -> dict[str, Any]:
    """One process: json per line, a dict of seen ids, sort, fold with Decimal."""
    started = time.monotonic()
    winners: dict[str, tuple] = {}
    bad = 0
    for path in sorted(data.rglob("*.jsonl*")):
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as lines:
            for line in lines:
                try:
                    e = json.loads(line, parse_float=Decimal)
                    event_id = str(e["event_id"])
                    event = (str(e["key"]), int(e["seq"]), e["op"], Decimal(str(e["amount"])))
                    if event[2] not in ("add", "subtract", "set") or event[1] < 1:
                        raise ValueError
                except (ValueError, KeyError, TypeError, ArithmeticError):
                    bad += 1
                    continue
                seen = winners.get(event_id)
                stamp = e.get("ingested_at") or ""
                if seen is None or stamp > seen[0]:
                    winners[event_id] = (stamp, event_id, *event)
    by_key: dict[str, list] = defaultdict(list)
    for _stamp, event_id, key, seq, op, amount in winners.values():
        by_key[key].append((seq, event_id, op, amount))
    balances = {}
    for key, events in by_key.items():
        balance = Decimal(0)
        for _, _, op, amount in sorted(events):
            balance = (
                amount if op == "set" else balance + amount if op == "add" else balance - amount
            )
        balances[key] = balance
    return {"seconds": time.monotonic() - started, "keys": len(balances), "bad_lines": bad}


def duckdb_fold(data: Path, work: Path) -> dict[str, Any]:
    """DuckDB: the same dedupe (window over event_id) and ordered fold, in SQL."""
    import duckdb

    started = time.monotonic()
    con = duckdb.connect()
    keys = con.execute(
        f"""
        WITH raw AS (
            SELECT * FROM read_json('{data}/**/*.jsonl*', format = 'newline_delimited',
                ignore_errors = true, hive_partitioning = false,
                columns = {{event_id: 'VARCHAR', key: 'VARCHAR', seq: 'BIGINT',
                           event_time: 'VARCHAR', op: 'VARCHAR', amount: 'DECIMAL(27,9)',
                           ingested_at: 'VARCHAR'}})
        ), valid AS (
            SELECT * FROM raw
            WHERE event_id IS NOT NULL AND key IS NOT NULL AND seq >= 1 AND amount IS NOT NULL
              AND op IN ('add', 'subtract', 'set')
              AND try_cast(event_time AS TIMESTAMPTZ) IS NOT NULL
        ), unique_events AS (
            SELECT * FROM (
                SELECT *, row_number() OVER (
                    PARTITION BY event_id ORDER BY ingested_at DESC NULLS LAST,
                    md5(concat_ws('|', key, seq, event_time, op, amount)) DESC) AS copy
                FROM valid)
            WHERE copy = 1
        ), ordered AS (
            SELECT *, row_number() OVER (PARTITION BY key ORDER BY seq, event_id) AS pos
            FROM unique_events
        ), marked AS (
            SELECT *, max(CASE WHEN op = 'set' THEN pos END) OVER (PARTITION BY key) AS last_set
            FROM ordered
        )
        SELECT count(*) FROM (
            SELECT key,
                coalesce(max(CASE WHEN pos = last_set THEN amount END), 0)
                + coalesce(sum(CASE WHEN pos > coalesce(last_set, 0)
                    THEN CASE WHEN op = 'subtract' THEN -amount ELSE amount END END), 0) AS balance
            FROM marked GROUP BY key)
        """
    ).fetchone()[0]
    return {"seconds": time.monotonic() - started, "keys": keys}


def hot_key(data: Path, work: Path) -> dict[str, Any]:
    """One key with 5M events, folded with the default settings: the whole group in one batch.

    The events are made by Spark (no input files) and the fold's result is checked against
    the same balance computed by a Spark aggregate, so a wrong or partial fold fails here.
    """
    from pyspark.sql import functions as F

    from pipelines.folds import get_fold
    from pipelines.transforms.fold import fold_states

    spark, startup = _session()
    events = HOT_KEY_EVENTS
    op = F.when(F.col("id") % 1000 == 7, "set").when(F.col("id") % 3 == 0, "subtract")
    events_df = spark.range(events).select(
        F.lit("hot").alias("key"),
        F.format_string("e%d", "id").alias("event_id"),
        (F.col("id") + 1).alias("seq"),
        F.timestamp_seconds("id").alias("event_time"),
        op.otherwise("add").alias("op"),
        ((F.col("id") % 977) / 8).cast("decimal(27,9)").alias("amount"),
        F.lit("valid").alias("outcome"),
    )
    started = time.monotonic()
    state = fold_states(events_df, get_fold("balance")).collect()
    seconds = time.monotonic() - started
    last_set = events_df.filter("op = 'set'").agg(F.max("seq")).first()[0]
    signed = F.when(F.col("op") == "subtract", -F.col("amount")).otherwise(F.col("amount"))
    expected = (
        events_df.filter(F.col("seq") >= last_set)
        .agg(F.sum(F.when(F.col("seq") == last_set, F.col("amount")).otherwise(signed)))
        .first()[0]
    )
    (row,) = state
    return {
        "seconds": seconds,
        "spark_startup_seconds": startup,
        "events": events,
        "event_count": row["event_count"],
        "balance_matches": row["balance"] == expected and row["event_count"] == events,
    }


HOT_KEY_EVENTS = 5_000_000
NIGHT_SHARE, LATE_SHARE = 0.01, 0.10


def _night_events(spark, history_table: Path, events: int, out: Path) -> Path:
    """One night after the history: `events` new events, a tenth of them late (a `seq` at
    or below their key's stored `last_seq`), the rest continuing their keys' streams."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    night = out / "dt=2026-03-01"
    if night.exists():
        return night
    state = spark.read.format("delta").load(str(history_table)).select("key", "last_seq")
    keys = state.count()
    picked = (
        spark.range(events)
        .select(
            "id",
            (F.xxhash64("id") % F.lit(keys)).alias("pick"),
            (F.col("id") % 10 == 0).alias("late"),
        )
        .withColumn("pick", F.abs("pick"))
    )
    numbered = state.withColumn("pick", F.row_number().over(Window.orderBy("key")) - 1)
    rows = picked.join(numbered, "pick").select(
        F.format_string("night-%d", "id").alias("event_id"),
        "key",
        F.when(F.col("late"), F.greatest(F.lit(1), F.col("last_seq") - 3))
        .otherwise(F.col("last_seq") + 1 + F.col("id") % 3)
        .alias("seq"),
        F.lit("2026-03-01T12:00:00Z").alias("event_time"),
        F.when(F.col("id") % 7 == 0, "subtract").otherwise("add").alias("op"),
        ((F.col("id") % 977) / 4).cast("decimal(27,9)").cast("string").alias("amount"),
        F.lit("2026-03-01T12:00:01Z").alias("ingested_at"),
    )
    rows.coalesce(4).write.mode("overwrite").json(str(night))
    for crc in night.glob(".*"):
        crc.unlink()
    for part in night.glob("part-*.json"):
        part.rename(part.with_suffix(".jsonl"))
    return night


def nightly(data: Path, work: Path) -> dict[str, Any]:
    """History in the tables (one full backfill), then the night: the night's run, a full
    re-fold of every key from the events table, and the night alone into empty tables, each
    in a fresh session with Spark's event log on for its profile."""
    from benchmarks.profile import event_log_conf, step_profile

    spark, startup = _session(data=data)
    history = work / "nightly"
    history_events = int(json.loads((data / "_generator.json").read_text())["events"])
    results: dict[str, Any] = {"spark_startup_seconds": startup, "history_events": history_events}
    if not (history / "_delta_log").exists():
        started = time.monotonic()
        report = _backfill(spark, data, history)
        results["history"] = {
            "seconds": round(time.monotonic() - started, 2),
            "records_read": report.counts.records_read,
            "keys_folded": report.keys.total,
        }
    night = _night_events(spark, history, int(NIGHT_SHARE * history_events), work / "night")
    spark.stop()
    for name, table, full in (
        ("night", history, False),
        ("full_refold", history, True),
        ("night_alone", work / "night_alone", False),
    ):
        spark, _ = _session(event_log_conf(work / f"eventlog-{name}"), data=night)  # profiled
        started = time.monotonic()
        report = _backfill(spark, night, table, full=full)
        seconds = time.monotonic() - started
        spark.stop()
        results[name] = {
            "seconds": round(seconds, 2),
            "profile": step_profile(work / f"eventlog-{name}", seconds),
            "records_read": report.counts.records_read,
            "keys_folded": report.keys.total,
            "keys_resumed": report.keys.resumed,
            "keys_refolded": report.keys.refolded,
            "history_events_read": report.keys.history_events_read,
            "new_events_folded": report.keys.new_events_folded,
        }
    results["seconds"] = results["night"]["seconds"]
    return results


def session_floor(data: Path, work: Path) -> dict[str, Any]:
    """What any run onto existing tables pays before its work: a process that starts the same
    Spark session, reads one Delta table (`data`, counted) and appends one row to another
    (`work`). Timed whole by the caller; the session's start is reported apart."""
    spark, startup = _session()
    started = time.monotonic()
    rows = spark.read.format("delta").load(str(data)).count()
    spark.createDataFrame([(rows,)], "rows long").write.format("delta").mode("append").save(
        str(work)
    )
    return {"seconds": time.monotonic() - started, "spark_startup_seconds": startup}


def fingerprint_cost(data: Path, work: Path) -> dict[str, Any]:
    """What a night pays for its fingerprint against a fingerprint counted from every row:
    the hash sum over the rows a night changing 1% of the keys writes (its change frame,
    held in memory as the run holds it), and over every row of the state read from its
    table (what each night would pay if the fingerprint were not kept from the changes)."""
    from pipelines.transforms.fingerprint import fingerprint_of

    spark, _ = _session()
    state_df = spark.read.format("delta").load(str(work / "state"))
    rows = state_df.count()
    night_df = state_df.sample(fraction=0.01, seed=1).persist()
    changed = night_df.count()
    started = time.monotonic()
    fingerprint_of(night_df)
    night_seconds = time.monotonic() - started
    started = time.monotonic()
    fingerprint_of(state_df)
    whole_seconds = time.monotonic() - started
    return {
        "state_rows": rows,
        "night_rows": changed,
        "night_fingerprint_seconds": round(night_seconds, 3),
        "whole_fingerprint_seconds": round(whole_seconds, 3),
    }


CONTENDERS = {
    "fingerprint_cost": fingerprint_cost,
    "spark_floor": spark_floor,
    "backfill_empty": backfill_empty,
    "backfill_one_percent": backfill_one_percent,
    "backfill_one_core": backfill_one_core,
    "python_replay": python_replay,
    "duckdb": duckdb_fold,
    "hot_key": hot_key,
    "nightly": nightly,
    "session_floor": session_floor,
}

if __name__ == "__main__":
    name, data_dir, work_dir = sys.argv[1:4]
    print(json.dumps(CONTENDERS[name](Path(data_dir), Path(work_dir))))
