"""A backfill on `local[2,4]` (4 attempts per task) whose fold fails the first attempt of
every task that folds one of about a third of the keys:
`python -m tests.flaky_run SOURCE TABLE FAILURES_DIR`.

Each injected failure leaves a file in FAILURES_DIR, so the test can count them.
"""

from __future__ import annotations

import json
import sys
import uuid
import zlib
from pathlib import Path

import pyarrow as pa
from pyspark import TaskContext

from pipelines.config import load_config
from pipelines.folds.balance import BalanceFold
from pipelines.report import json_default
from pipelines.run import RunRequest, run_backfill
from pipelines.session import build_session


class FlakyBalance(BalanceFold):
    name = "flaky_balance"

    def __init__(self, failures_dir: str) -> None:
        self.failures_dir = failures_dir

    def fold_keys(self, events: pa.Table) -> pa.Table:
        context = TaskContext.get()
        if context is not None and context.attemptNumber() == 0:
            for key in set(events["key"].to_pylist()):
                if zlib.crc32(key.encode()) % 3 == 0:
                    (Path(self.failures_dir) / f"{key}-{uuid.uuid4().hex}").touch()
                    raise RuntimeError(f"injected failure folding {key}")
        return super().fold_keys(events)


def main(source: str, table: str, failures_dir: str) -> int:
    # Found by import path, with its option from the config, as a user's fold would be.
    config = load_config().with_overrides(
        **{
            "fold": "tests.flaky_run:FlakyBalance",
            "fold_options": {"failures_dir": failures_dir},
            "spark.master": "local[2,4]",
            "spark.shuffle_partitions": 4,
        }
    )
    spark = build_session(config)
    request = RunRequest(sources=[source], table=table, quarantine_table=f"{table}_quarantine")
    report = run_backfill(spark, config, request, progress=lambda message: None)
    print(json.dumps(report.to_dict(), default=json_default))  # one line
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
