"""When S3 misbehaves: the S3 server process frozen (SIGSTOP) for a while, or for good.

The timeouts are short here (S3A's shortest request timeout, 15 s, and one retry) so that a
dead endpoint fails a run in about 30 s instead of the default's 90; the mechanism is the
same.
"""

from __future__ import annotations

import signal
import threading
import time
import uuid

import pytest

from pipelines.generate.log import generate_log
from pipelines.io import s3
from pipelines.run import RunRequest, run_backfill
from pipelines.session import apply_s3_settings
from tests.cli import ROOT, run_main, start_cli
from tests.helpers import table_states
from tests.reference import read_lines, reference_backfill
from tests.s3server import s3_server_process

SHORT = {
    "connect_timeout_seconds": 2,
    "request_timeout_seconds": 2,
    "retry_limit": 1,
    "retry_interval_seconds": 0.5,
}


@pytest.fixture(scope="module")
def server(spark):
    with s3_server_process(**SHORT) as (config, process):
        apply_s3_settings(spark, config)
        yield config, process


@pytest.fixture
def lake(server, tmp_path):
    """A bucket holding a generated log; the local copy of the log."""
    config, _ = server
    bucket = f"lake-{uuid.uuid4().hex[:12]}"
    s3.client(config).create_bucket(Bucket=bucket)
    events = tmp_path / "events"
    generate_log(events, events=1500, keys=30, seed=17, days=2)
    s3.upload_tree(events, f"s3://{bucket}/raw", config)
    return bucket, events


def test_a_server_frozen_for_seconds_mid_run_is_ridden_out(spark, config, server, lake):
    """Frozen for 5 s as the run starts storing events: its requests wait, and the run ends
    as an undisturbed one."""
    s3_config, process = server
    bucket, events = lake
    frozen = threading.Event()

    def progress(message: str) -> None:
        if message.startswith("storing") and not frozen.is_set():
            frozen.set()
            process.send_signal(signal.SIGSTOP)
            threading.Timer(5, process.send_signal, args=(signal.SIGCONT,)).start()

    table = f"s3a://{bucket}/state"
    request = RunRequest(
        sources=[f"s3a://{bucket}/raw"], table=table, quarantine_table=f"{table}_quarantine"
    )
    started = time.monotonic()
    report = run_backfill(spark, config.model_copy(update={"s3": s3_config}), request, progress)
    assert frozen.is_set()
    assert time.monotonic() - started > 5  # the run did wait for the server
    expected = reference_backfill(read_lines(events))
    assert report.status == "committed"
    assert report.counts.quarantined_by_reason == dict(expected.reasons)
    assert table_states(spark, table) == expected.states


def test_a_server_frozen_for_good_fails_the_run_in_bounded_time_with_one_line(
    spark, server, lake, tmp_path
):
    """Frozen as the run starts reading: exit 1 within the configured bound, one line naming
    the endpoint and what the run was doing, the trace in the log file, no table written;
    once the server is back, a rerun (through `main`, on the tests' session) converges."""
    s3_config, process = server
    bucket, events = lake
    config_file = tmp_path / "s3-short.yaml"
    config_file.write_text(
        f"extends: {ROOT / 'tests' / 'backfill-test.yaml'}\n"
        f"s3:\n  endpoint: {s3_config.endpoint}\n  path_style_access: true\n  ssl: false\n"
        + "".join(f"  {name}: {value}\n" for name, value in SHORT.items())
    )
    report = tmp_path / "night.json"
    command = [
        "run", "--config", str(config_file), "--source", f"s3a://{bucket}/raw",
        "--table", f"s3a://{bucket}/state", "--report", str(report),
    ]  # fmt: skip
    run = start_cli(*command, cwd=tmp_path)
    assert run.stderr is not None
    lines = []
    for line in run.stderr:
        lines.append(line)
        if "reading 1 source(s)" in line:
            process.send_signal(signal.SIGSTOP)
            frozen_at = time.monotonic()
            break
    try:
        lines += run.stderr.readlines()
        run.wait(timeout=300)
        waited = time.monotonic() - frozen_at
    finally:
        process.send_signal(signal.SIGCONT)

    stderr = "".join(lines)
    assert run.returncode == 1, stderr
    assert waited < s3_config.failure_bound_seconds + 30, waited  # 30 s: Spark's own steps
    last = stderr.strip().splitlines()[-1]
    assert last.startswith(f"backfill: run failed: S3 endpoint {s3_config.endpoint} stopped "
                           "answering while reading"), last  # fmt: skip
    log_file = tmp_path / "night.log"
    assert last.endswith(f"full trace in {log_file}"), last
    assert "Traceback" in log_file.read_text()
    for noise in ("Traceback", "\tat ", "at java.", "py4j", "SLF4J", "Py4J"):
        assert noise not in stderr, noise
    assert not s3.client(s3_config).list_objects_v2(Bucket=bucket, Prefix="state").get("Contents")

    done = run_main(*command, spark=spark)
    assert done.returncode == 0, done.stderr[-2000:]
    assert table_states(spark, f"s3a://{bucket}/state") == (
        reference_backfill(read_lines(events)).states
    )
