"""Where a backfill's time goes: its Spark event log, summed by the step that started each job.

The backfill marks the Spark jobs of each step (`pipelines.run.accounting.STEPS`) with a local
property; jobs started outside a step (reading a table's version, writing the report) count as
`other`.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from pipelines.run.accounting import STEP_PROPERTY, STEPS

OTHER = "other"
OUTSIDE_JOBS = "outside Spark jobs"
EVENT_LOG_CONF = {
    "spark.eventLog.enabled": "true",
    "spark.eventLog.compress": "false",
    "spark.eventLog.rolling.enabled": "false",  # one file per application
}


def event_log_conf(directory: Path) -> dict[str, str]:
    directory.mkdir(parents=True, exist_ok=True)
    return {**EVENT_LOG_CONF, "spark.eventLog.dir": directory.resolve().as_uri()}


def step_profile(directory: Path, total_seconds: float) -> dict[str, dict[str, float]]:
    """Per step: wall seconds of its jobs, executor CPU seconds, shuffle bytes written; and
    the seconds of the `total_seconds` run during which no Spark job ran (driver work:
    planning, Delta's log, Python)."""
    (log,) = [p for p in directory.iterdir() if p.is_file() and not p.name.startswith(".")]
    job_step: dict[int, str] = {}
    job_started: dict[int, int] = {}
    stage_job: dict[int, int] = {}
    intervals: list[tuple[int, int]] = []
    steps: dict[str, dict[str, float]] = defaultdict(
        lambda: {"seconds": 0.0, "cpu_seconds": 0.0, "shuffle_written_mb": 0.0}
    )
    with log.open(encoding="utf-8") as lines:
        for line in lines:
            event = json.loads(line)
            kind = event["Event"]
            if kind == "SparkListenerJobStart":
                job = event["Job ID"]
                job_step[job] = _step(event.get("Properties") or {})
                job_started[job] = event["Submission Time"]
                for stage in event["Stage IDs"]:
                    stage_job[stage] = job
            elif kind == "SparkListenerJobEnd":
                job = event["Job ID"]
                started, ended = job_started[job], event["Completion Time"]
                intervals.append((started, ended))
                steps[job_step[job]]["seconds"] += (ended - started) / 1000
            elif kind == "SparkListenerStageCompleted":
                info = event["Stage Info"]
                step = job_step.get(stage_job.get(info["Stage ID"], -1), OTHER)
                metrics = _accumulables(info)
                cpu_ns = metrics.get("internal.metrics.executorCpuTime", 0)
                written = metrics.get("internal.metrics.shuffle.write.bytesWritten", 0)
                steps[step]["cpu_seconds"] += cpu_ns / 1e9
                steps[step]["shuffle_written_mb"] += written / 2**20
    steps[OUTSIDE_JOBS]["seconds"] = max(0.0, total_seconds - _covered_ms(intervals) / 1000)
    order = [*STEPS, OTHER, OUTSIDE_JOBS]
    return {
        name: {k: round(v, 1) for k, v in steps[name].items()} for name in order if name in steps
    }


def _covered_ms(intervals: list[tuple[int, int]]) -> int:
    """Milliseconds during which at least one job ran (jobs may overlap)."""
    covered, reached = 0, 0
    for start, end in sorted(intervals):
        start = max(start, reached)
        if end > start:
            covered += end - start
            reached = end
    return covered


def _step(properties: dict[str, Any]) -> str:
    name = properties.get(STEP_PROPERTY)
    return name if name in STEPS else OTHER


def _accumulables(stage_info: dict[str, Any]) -> dict[str, float]:
    values: dict[str, float] = {}
    for accumulable in stage_info.get("Accumulables", []):
        try:
            values[accumulable["Name"]] = float(accumulable["Value"])
        except (KeyError, TypeError, ValueError):
            continue
    return values
