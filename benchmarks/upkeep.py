"""Nights over a long stretch, with and without upkeep (issue: upkeep).

One generated log of `nights` dt= partitions (`events_per_night` events each, over `keys`
keys, the generator's default faults) is run night by night into three sets of tables in one
warm Spark session: one never maintained, one with `backfill maintain` every `every` nights,
and one left to Delta's auto compaction (`delta.autoOptimize.autoCompact` on all three tables,
compacting a table or bucket once it holds `every` small files, so both kinds of upkeep start
at the same count). Each night's time and the three tables' file counts are recorded, and each
maintain's time. A warm session measures what the tables cost a night (it keeps the optimizing
compiler, as a long-lived process should); a scheduler's whole process adds its fixed start
(see the small runs).

`python -m benchmarks.upkeep --nights 30` runs it alone and prints the JSON; `make bench`
runs it as its `upkeep` part.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from pipelines.generate.log import generate_log
from pipelines.io.sources import DateWindow
from pipelines.schema import default_events_uri, default_quarantine_uri

FIRST_NIGHT = date(2026, 1, 1)  # the generator's first dt= partition
ARMS = ("none", "weekly", "auto")
AUTO_COMPACT = "delta.autoOptimize.autoCompact"


def bench_upkeep(
    out: Path, nights: int, events_per_night: int = 20_000, keys: int = 50_000, every: int = 7
) -> dict[str, Any]:
    from pipelines.config import load_config
    from pipelines.maintain import maintain
    from pipelines.run import RunRequest, run_backfill
    from pipelines.session import build_session

    data, work = out / f"upkeep-events-{nights}", out / f"upkeep-{nights}"
    if not (data / "_generator.json").exists():
        shutil.rmtree(data, ignore_errors=True)
        generate_log(
            data,
            events=nights * events_per_night,
            keys=keys,
            seed=11,
            days=nights,
            files_per_day=1,
        )
    shutil.rmtree(work, ignore_errors=True)
    config = load_config()
    spark = build_session(config, large_run=True)
    # Auto compaction applies to the tables that ask for it (the `auto` arm's only), once a
    # table or bucket holds this many small files (Delta's default is 50).
    spark.conf.set("spark.databricks.delta.autoCompact.minNumFiles", str(every))
    arms: dict[str, list[dict[str, Any]]] = {arm: [] for arm in ARMS}
    maintains: list[dict[str, Any]] = []
    try:
        for number in range(1, nights + 1):
            day = FIRST_NIGHT + timedelta(days=number - 1)
            for arm, rows in arms.items():
                table = str(work / arm / "state")
                tables = {
                    "state": table,
                    "events": default_events_uri(table),
                    "quarantine": default_quarantine_uri(table),
                }
                if arm == "auto":
                    _auto_compact(spark, tables.values())
                request = RunRequest(sources=[str(data)], table=table, window=DateWindow(day, day))
                started = time.monotonic()
                run_backfill(spark, config, request, progress=lambda message: None)
                seconds = time.monotonic() - started
                rows.append({"night": number, "seconds": round(seconds, 2), **_files(table)})
                if arm == "weekly" and number % every == 0:
                    started = time.monotonic()
                    maintain(spark, config, tables)
                    maintains.append(
                        {"night": number, "seconds": round(time.monotonic() - started, 2)}
                    )
            print(
                f"  upkeep: night {number}/{nights}: "
                + ", ".join(f"{a} {r[-1]['seconds']:.1f}s" for a, r in arms.items()),
                file=sys.stderr,
                flush=True,
            )
        # Upkeep changes no row: every arm's state ends the same.
        states = [_state_rows(str(work / arm / "state")) for arm in ARMS]
        states_equal = all(rows == states[0] for rows in states)
        # A re-fold of a few keys: what a literal key filter could skip, by each arm's layout
        # (5 keys, and 200: a night of this log re-folds a few hundred).
        samples = [[row["key"] for row in random.Random(5).sample(states[0], n)] for n in (5, 200)]
        key_filter = {
            arm: [
                key_filter_reach(default_events_uri(str(work / arm / "state")), sample)
                for sample in samples
            ]
            for arm in ARMS
        }
    finally:
        spark.stop()
    return {
        "states_equal": states_equal,
        "key_filter": key_filter,
        "nights": nights,
        "events_per_night": events_per_night,
        "keys": keys,
        "maintain_every": every,
        "arms": arms,
        "maintains": maintains,
    }


def _auto_compact(spark: Any, uris: Any) -> None:
    """Turn auto compaction on for each of these tables that exists and lacks it (the
    first night creates them; the quarantine appears with the first quarantined record)."""
    from delta.tables import DeltaTable

    for uri in uris:
        if not DeltaTable.isDeltaTable(spark, uri):
            continue
        properties = DeltaTable.forPath(spark, uri).detail().first()["properties"]
        if properties.get(AUTO_COMPACT) != "true":
            spark.sql(f"ALTER TABLE delta.`{uri}` SET TBLPROPERTIES ('{AUTO_COMPACT}' = 'true')")


def key_filter_reach(events: str, keys: list[str]) -> dict[str, int]:
    """What a literal `key IN (keys)` filter on the events table could skip by its layout:
    the files whose key range (the log's statistics) holds one of `keys`, and the Parquet row
    groups whose key statistics do, against all of them."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from deltalake import DeltaTable

    table = DeltaTable(events)
    actions = pa.table(table.get_add_actions(flatten=True)).to_pylist()
    wanted = sorted(keys)

    def holds(low: str | None, high: str | None) -> bool:
        return low is None or high is None or any(low <= key <= high for key in wanted)

    files = [a for a in actions if holds(a["min.key"], a["max.key"])]
    groups = reached = 0
    for action in actions:
        metadata = pq.ParquetFile(f"{events}/{action['path']}").metadata
        column = metadata.schema.names.index("key")
        for index in range(metadata.num_row_groups):
            stats = metadata.row_group(index).column(column).statistics
            groups += 1
            reached += holds(stats.min, stats.max) if stats and stats.has_min_max else 1
    return {
        "keys": len(keys),
        "files": len(actions),
        "files_reached": len(files),
        "row_groups": groups,
        "row_groups_reached": reached,
    }


def _state_rows(table: str) -> list[dict[str, Any]]:
    from deltalake import DeltaTable

    return sorted(DeltaTable(table).to_pyarrow_table().to_pylist(), key=lambda row: row["key"])


def _files(table: str) -> dict[str, int]:
    """The live files of each of the three tables, from their logs (delta-rs)."""
    from deltalake import DeltaTable

    uris = {
        "state_files": table,
        "events_files": default_events_uri(table),
        "quarantine_files": default_quarantine_uri(table),
    }
    counts = {}
    for name, uri in uris.items():
        try:
            counts[name] = len(DeltaTable(uri).file_uris())
        except Exception:  # a table not made yet (no quarantined record so far)
            counts[name] = 0
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nights", type=int, default=30)
    parser.add_argument("--events-per-night", type=int, default=20_000)
    parser.add_argument("--keys", type=int, default=50_000)
    parser.add_argument("--every", type=int, default=7)
    parser.add_argument("--out", default=str(Path(__file__).parent / "out"))
    args = parser.parse_args()
    result = bench_upkeep(Path(args.out), args.nights, args.events_per_night, args.keys, args.every)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
