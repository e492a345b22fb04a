"""`make bench`: the same faulty event log at each size, five contenders timed in one run.

Writes benchmarks/results.json, each part stamped with the date, commit and table settings it
was measured on, then renders docs/performance.md from it (`python -m benchmarks.render`
renders again without measuring). The parts: `benchmarks.runner` (a contender in its own
process, its peak memory), `benchmarks.scenarios` (what is measured) and `benchmarks.render`
(the page).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from benchmarks.render import PAGE, RESULTS, ROOT, render
from benchmarks.runner import HERE, run_contender, stamp
from benchmarks.scenarios import (
    LARGE_ORDER,
    bench_formats,
    bench_nightly,
    bench_size,
    bench_small_runs,
    bench_trust,
)
from benchmarks.upkeep import bench_upkeep


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1000000,10000000")
    parser.add_argument("--large", type=int, default=30_000_000, help="floor and backfill only")
    parser.add_argument("--nightly", type=int, default=10_000_000, help="events of history")
    parser.add_argument("--small", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument(
        "--formats", type=int, default=2_000_000, help="events for JSON vs Parquet (0: skip)"
    )
    parser.add_argument(
        "--upkeep",
        type=int,
        default=100,
        metavar="NIGHTS",
        help="nights of 20,000 events with and without a weekly maintain (0: skip)",
    )
    parser.add_argument(
        "--trust",
        type=int,
        default=10_000_000,
        metavar="EVENTS",
        help="verify and verify --deep after a full backfill of this many events (0: skip)",
    )
    parser.add_argument("--out", default=str(HERE / "out"))
    args = parser.parse_args()
    out = Path(args.out)
    measured = stamp()  # the date, commit, deletion vectors and machine of every part run now
    # A part not run this time keeps its figures from the last run that measured it.
    report: dict[str, Any] = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    report.setdefault("measured", {})
    sizes = [bench_size(int(n), out) for n in args.sizes.split(",") if n]
    if sizes:
        report["sizes"] = sizes
        print("  hot key: one key, 5M events ...", file=sys.stderr, flush=True)
        report["hot_key"] = run_contender("hot_key", out, out)
        report["measured"].update(sizes=measured, hot_key=measured)
    if args.large:
        report["large"] = bench_size(args.large, out, LARGE_ORDER)
        report["measured"]["large"] = measured
    if args.small:
        report["small_runs"] = bench_small_runs(out)
        report["measured"]["small_runs"] = measured
    if args.nightly:
        report["nightly"] = bench_nightly(args.nightly, out)
        report["measured"]["nightly"] = measured
    if args.formats:
        report["formats"] = bench_formats(args.formats, out)
        report["measured"]["formats"] = measured
    if args.trust:
        report["trust"] = bench_trust(args.trust, out)
        report["measured"]["trust"] = measured
    if args.upkeep:
        report["upkeep"] = bench_upkeep(out, args.upkeep)
        report["measured"]["upkeep"] = measured
    report.update(date=measured["date"], machine=measured["machine"])
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    render()
    print(f"wrote {RESULTS.relative_to(ROOT)} and {PAGE.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
