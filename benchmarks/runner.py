"""Running one contender or one command as its own process, and what it cost.

A contender's peak memory is the largest resident set of its whole process tree (Spark's JVM
and Python workers included), sampled every 100 ms.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from pipelines.generate.log import generate_log

HERE = Path(__file__).resolve().parent


def run_contender(name: str, data: Path, work: Path) -> dict[str, Any]:
    """Run contender `name` in its own process: what it reports, its peak memory and
    `process_seconds`, the wall time of the whole process (Python and Spark's start too)."""
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.contenders", name, str(data), str(work)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=HERE.parent,
    )
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        parent = psutil.Process(process.pid)
        while not done.is_set():
            try:
                tree = [parent, *parent.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
            except psutil.Error:
                pass
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = process.communicate()
    process_seconds = round(time.monotonic() - started, 1)
    done.set()
    sampler.join()
    if process.returncode != 0:
        errors = [line for line in err.splitlines() if "Error" in line or "Exception" in line]
        return {
            "failed": (errors or [err.strip()[-300:]])[0][:300],
            "peak_rss_mb": round(peak / 2**20),
        }
    result = json.loads(out.strip().splitlines()[-1])
    result["peak_rss_mb"] = round(peak / 2**20)
    result["process_seconds"] = process_seconds
    return result


def prepare(data: Path, work: Path, **log: Any) -> None:
    """An empty `work` directory, and the log `generate_log(data, **log)` writes, made once
    and kept for later runs."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    if not (data / "_generator.json").exists():
        shutil.rmtree(data, ignore_errors=True)
        generate_log(data, **log)


def run_cli(args: list[str], cwd: Path) -> tuple[float, str]:
    """Run `backfill ARGS` as its own process; its wall time and what it printed."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(HERE.parent)},
    )
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"backfill {' '.join(args)} failed: {done.stderr[-2000:]}")
    return seconds, done.stdout + done.stderr


def stamp() -> dict[str, Any]:
    """What a part of the results was measured on: the date, the commit of the code (`+changes`
    when the work tree differed from it), whether the tables get deletion vectors, the machine."""
    from pipelines.config import load_config

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], capture_output=True, text=True, cwd=HERE.parent)
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    if git("status", "--porcelain", "--untracked-files=no"):
        commit += "+changes"
    return {
        "date": time.strftime("%Y-%m-%d"),
        "commit": commit,
        "deletion_vectors": load_config().tables.deletion_vectors,
        "machine": machine(),
    }


def machine() -> dict[str, Any]:
    java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr.splitlines()
    return {
        "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "java": java[0] if java else "unknown",
        "platform": platform.platform(),
    }
