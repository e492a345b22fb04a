"""Nights over a long stretch, with and without `backfill maintain` (issue: upkeep).

One generated log of `nights` dt= partitions (`events_per_night` events each, over `keys`
keys, the generator's default faults) is run night by night into two sets of tables in one
warm Spark session: one never maintained, one maintained every `every` nights. Each night's
time and the three tables' file counts are recorded, and each maintain's time. A warm session
measures what the tables cost a night; a scheduler's whole process adds its fixed start (see
the small runs).

`python -m benchmarks.upkeep --nights 30` runs it alone and prints the JSON; `make bench`
runs it as its `upkeep` part.
"""

from __future__ import annotations

import argparse
import json
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
    spark = build_session(config)
    arms: dict[str, list[dict[str, Any]]] = {"none": [], "weekly": []}
    maintains: list[dict[str, Any]] = []
    try:
        for number in range(1, nights + 1):
            day = FIRST_NIGHT + timedelta(days=number - 1)
            for arm, rows in arms.items():
                table = str(work / arm / "state")
                request = RunRequest(sources=[str(data)], table=table, window=DateWindow(day, day))
                started = time.monotonic()
                run_backfill(spark, config, request, progress=lambda message: None)
                seconds = time.monotonic() - started
                rows.append({"night": number, "seconds": round(seconds, 2), **_files(table)})
                if arm == "weekly" and number % every == 0:
                    tables = {
                        "state": table,
                        "events": default_events_uri(table),
                        "quarantine": default_quarantine_uri(table),
                    }
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
    finally:
        spark.stop()
    return {
        "nights": nights,
        "events_per_night": events_per_night,
        "keys": keys,
        "maintain_every": every,
        "arms": arms,
        "maintains": maintains,
    }


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
