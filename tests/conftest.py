"""One Spark session for the whole test run: local[2], UI off, few shuffle partitions, Delta."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from pyspark.sql import SparkSession

from pipelines.config import load_config
from pipelines.session import build_session

# Test-only credentials for the local S3 server, set before any JVM starts so S3A's default
# chain finds them. A developer's own credentials, if set, are left alone.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "backfill-test")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "backfill-test")


def make_test_config():
    return load_config().with_overrides(
        **{"spark.master": "local[2]", "spark.shuffle_partitions": 2}
    )


@pytest.fixture(scope="session")
def config():
    return make_test_config()


@pytest.fixture(scope="session")
def spark(config) -> Iterator[SparkSession]:
    session = build_session(config)
    yield session
    session.stop()
