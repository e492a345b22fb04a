"""The package as a user installs it: `pip install` of the built wheel (not editable, not
the source tree) into a fresh venv, then `backfill demo` as the README runs it (the default
fold) from an empty directory: its table, read with delta-rs, equals the plain-Python reference
over every generated line, and the live worker's version did not (test_demo runs both folds'
demos from the source tree in `make soak`). The default config and the logging settings come
from the wheel's package data."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.config import CONFIG_ENV
from tests.helpers import delta_rs_states
from tests.reference import read_lines, reference_backfill

ROOT = Path(__file__).resolve().parent.parent


def run(*command: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    # Nothing from the source tree: no import path, no test config.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", CONFIG_ENV)}
    return subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.mark.slow
def test_a_wheel_install_runs_the_demo_from_an_empty_directory(tmp_path):
    built = run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", tmp_path, ROOT)
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("backfill_pipeline-*.whl")
    venv = tmp_path / "venv"
    assert run(sys.executable, "-m", "venv", venv).returncode == 0
    installed = run(venv / "bin" / "python", "-m", "pip", "install", "-q", wheel)
    assert installed.returncode == 0, installed.stderr

    empty = tmp_path / "empty"
    empty.mkdir()
    where = run(
        venv / "bin" / "python",
        "-c",
        "import pipelines.config as c; print(c.DEFAULT_CONFIG)",
        cwd=empty,
    )
    assert where.stdout.strip().startswith(str(venv)), where.stdout  # the wheel's own copy
    flags = ["--events", "2000", "--keys", "40", "--days", "2", "--shuffle-partitions", "2"]
    demo = run(venv / "bin" / "backfill", "demo", *flags, cwd=empty)

    assert demo.returncode == 0, demo.stderr[-2000:]
    assert demo.stdout.count(": committed") == 2
    assert "Traceback" not in demo.stderr and "WARN" not in demo.stderr  # log4j2.properties read
    work = empty / "backfill-demo"
    expected = reference_backfill(read_lines(work / "events"))
    assert delta_rs_states(work / "state") == expected.states
    assert delta_rs_states(work / "state", version=1) != expected.states  # the live worker's
