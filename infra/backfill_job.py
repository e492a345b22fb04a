"""Entry script for spark-submit: the same `backfill` command line, run by Spark's launcher."""

from __future__ import annotations

import sys

from pipelines.cli import main

if __name__ == "__main__":
    sys.exit(main())
