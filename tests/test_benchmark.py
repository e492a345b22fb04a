"""The benchmark's profile: the backfill's Spark jobs, read back from a real event log by step."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from pipelines.generate.events import generate_log
from pipelines.job import STEPS

ROOT = Path(__file__).resolve().parent.parent


def test_the_full_backfill_contender_reports_where_its_time_went(tmp_path):
    data, work = tmp_path / "events", tmp_path / "work"
    generate_log(data, events=4000, keys=80, seed=5, days=2, files_per_day=2)
    work.mkdir()
    run = subprocess.run(
        [sys.executable, "-m", "benchmarks.contenders", "backfill_empty", str(data), str(work)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    profile = result["profile"]

    # Every step ran Spark jobs, and the shuffles are where the design puts them.
    assert all(profile[step]["seconds"] > 0 for step in STEPS), profile
    assert profile["validate"]["cpu_seconds"] > 0
    assert profile["dedupe"]["shuffle_written_mb"] > 0  # the event_id window
    assert profile["fold"]["shuffle_written_mb"] > 0  # the shuffle by key
    assert 0 < profile["outside Spark jobs"]["seconds"] < result["seconds"]


def test_time_inside_jobs_counts_overlapping_jobs_once():
    from benchmarks.profile import _covered_ms

    assert _covered_ms([]) == 0
    assert _covered_ms([(0, 10), (20, 30)]) == 20
    assert _covered_ms([(0, 10), (5, 15), (6, 8), (15, 16)]) == 16
