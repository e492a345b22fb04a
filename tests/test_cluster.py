"""spark-submit to a real standalone cluster: the same job, the same result as local mode."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.generate.log import generate_log
from tests.cluster import standalone_cluster
from tests.helpers import table_states
from tests.reference import read_lines, reference_backfill
from tests.test_pipeline import HEAVY_FAULTS

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_spark_submit_to_standalone_cluster_gives_the_reference_result(spark, tmp_path):
    events, table, report = tmp_path / "events", tmp_path / "state", tmp_path / "report.json"
    generate_log(events, events=3000, keys=50, seed=31, faults=HEAVY_FAULTS)
    expected = reference_backfill(read_lines(events))

    with standalone_cluster(tmp_path / "cluster") as cluster:

        def submit(*extra: str) -> dict:
            result = subprocess.run(
                [
                    str(ROOT / "infra" / "spark-submit.sh"),
                    "--master", cluster.master_url,
                    "--spark-conf", "spark.executor.cores=1",
                    "--spark-conf", "spark.cores.max=2",
                    "--", "run", "--source", str(events), "--table", str(table),
                    "--report", str(report),
                    "--txn-app-id", "nightly", "--txn-version", "20260105", *extra,
                ],
                capture_output=True, text=True, timeout=900,
                env={**os.environ, "PYTHON": sys.executable, "SPARK_LOCAL_IP": "127.0.0.1"},
            )  # fmt: skip
            assert result.returncode == 0, result.stderr[-3000:]
            return json.loads(report.read_text())

        first = submit()
        executor_logs = [sorted(d.glob("app-*/*/stderr")) for d in cluster.worker_dirs]
        # Both workers ran executors, and those executors ran tasks.
        assert all(executor_logs), executor_logs
        for logs in executor_logs:
            assert any("Finished task" in log.read_text() for log in logs)
        assert first["counts"]["records_read"] == expected.records_read
        assert first["counts"]["quarantined_by_reason"] == dict(expected.reasons)
        assert table_states(spark, table) == expected.states
