"""A backfill that SIGKILLs itself right after one of its commits:
`python -m tests.killed_run SOURCE TABLE AFTER` with AFTER `quarantine` or `events`.

The process dies with the JVM still running, as a machine that loses power would leave the
tables: that commit made, the ones after it not.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from typing import Any

from pipelines.run import RunRequest, run_backfill, store
from pipelines.session import build_session
from tests.conftest import make_test_config


def _then_die(commit: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = commit(*args, **kwargs)
        os.killpg(os.getpgrp(), signal.SIGKILL)  # the JVM too
        return result

    return wrapper


def main(source: str, table: str, after: str) -> int:
    if after == "quarantine":
        store.merge_quarantine = _then_die(store.merge_quarantine)  # type: ignore[assignment]
    else:
        store.merge_events = _then_die(store.merge_events)  # type: ignore[assignment]
    config = make_test_config()
    spark = build_session(config)
    request = RunRequest(sources=[source], table=table, quarantine_table=f"{table}_quarantine")
    run_backfill(spark, config, request, progress=lambda message: None)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
