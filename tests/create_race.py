"""One writer of a two-writer race on a table that does not exist yet:
`python -m tests.create_race TABLE BARRIER_DIR KEY`.

Both writers start Spark, say so with a file in BARRIER_DIR, wait for the other's file and
MERGE one row each at once, so they race to create the table. Prints its `MergeResult` as
one JSON line (`attempts` counts the commits Delta rejected, plus one).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from decimal import Decimal
from pathlib import Path

from pipelines.config import load_config
from pipelines.folds import get_fold
from pipelines.io.delta_tables import merge_state
from pipelines.session import build_session


def main(table: str, barrier: Path, key: str) -> None:
    fold = get_fold("balance")
    config = load_config(None).with_overrides(**{"spark.master": "local[1]"})
    spark = build_session(config)
    state_df = spark.createDataFrame([(key, Decimal("1"), 1, 1, 0, None)], fold.state_schema)
    state_df = state_df.cache()
    state_df.count()

    (barrier / key).touch()
    deadline = time.monotonic() + 120
    while len(list(barrier.iterdir())) < 2 and time.monotonic() < deadline:
        time.sleep(0.001)
    result = merge_state(spark, table, state_df, fold)
    print(json.dumps(dataclasses.asdict(result)), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), sys.argv[3])
