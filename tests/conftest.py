"""One Spark session for the whole test run: local[2], UI off, few shuffle partitions, Delta."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pyspark.sql import SparkSession

from pipelines.config import load_config
from pipelines.session import build_session


def make_test_config():
    return load_config().with_overrides(
        **{"spark.master": "local[2]", "spark.shuffle_partitions": 2}
    )


@pytest.fixture(scope="session")
def config():
    return make_test_config()


@pytest.fixture(scope="session")
def spark(config) -> Iterator[SparkSession]:
    session = build_session(config.spark)
    yield session
    session.stop()
