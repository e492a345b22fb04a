"""One Spark session for the whole test run: local[2], UI off, few shuffle partitions, Delta."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from pipelines.config import CONFIG_ENV, load_config
from pipelines.session import build_session
from tests.helpers import SOAK

# Test-only credentials for the local S3 server, set before any JVM starts so S3A's default
# chain finds them. A developer's own credentials, if set, are left alone.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "backfill-test")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "backfill-test")


# Every run the tests start, in this process or as a command, reads the test config.
os.environ[CONFIG_ENV] = str(Path(__file__).with_name("backfill-test.yaml"))


def make_test_config():
    return load_config()


@pytest.fixture(scope="session")
def config():
    return make_test_config()


# The JVM of the tests' own session, which lives for the whole run (each xdist worker holds
# one for many runs): the optimizing compiler (C2) pays for itself after the first few runs
# (a warm 3-record night 7-7.5 s instead of 10 s with conf/local.yaml's C1-only JVM, which
# suits a process that lives for one run). The serial collector still leaves the cores to
# the work (`large_run`: without the config's small-run C1 flag). Processes the tests start
# keep the config's JVM, as a user's runs do.
LONG_LIVED_JVM = "-XX:+UseSerialGC"


@pytest.fixture(scope="session")
def spark(config) -> Iterator[SparkSession]:
    session = build_session(
        config.with_overrides(**{"spark.java_options": LONG_LIVED_JVM}), large_run=True
    )
    yield session
    session.stop()


def pytest_collection_modifyitems(items) -> None:
    """Longest first on every worker: the `slow` tests (whole processes, 1-3 minutes) start it.

    `--dist worksteal` hands worker i the i-th contiguous block of the collection (the first
    block `len // n` long, as xdist sizes them), then lets an idle worker steal the back half
    of the longest queue. A slow test that starts last keeps one worker busy minutes after the
    other has run out, so each block starts with its round-robin share of the slow tests and
    the short ones fill in behind. Without xdist the slow tests simply come first. Tests
    marked `soak` are skipped unless `make soak` runs them.
    """
    if not SOAK:
        for item in items:
            if item.get_closest_marker("soak") is not None:
                item.add_marker(pytest.mark.skip(reason="a soak test: `make soak` runs it"))
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    slow = [item for item in items if item.get_closest_marker("slow") is not None]
    short = [item for item in items if item.get_closest_marker("slow") is None]
    ordered, left = [], len(items)
    for worker in range(workers):
        block = left // (workers - worker)
        share = slow[worker::workers]
        ordered += share + short[: block - len(share)]
        del short[: block - len(share)]
        left -= block
    items[:] = ordered + short


# Figures the reliability suite measures (trials, kills, conflicts, rows lost), printed at
# the end of the run so CI logs show them and the README can quote them.
RELIABILITY_FIGURES: dict[str, int] = {}


@pytest.fixture(scope="session")
def reliability_figures() -> dict[str, int]:
    return RELIABILITY_FIGURES


def pytest_sessionfinish(session) -> None:
    """Under pytest-xdist, a worker hands its figures to the controller, which sums them."""
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["reliability_figures"] = dict(RELIABILITY_FIGURES)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:
    for name, value in getattr(node, "workeroutput", {}).get("reliability_figures", {}).items():
        RELIABILITY_FIGURES[name] = RELIABILITY_FIGURES.get(name, 0) + value


def pytest_terminal_summary(terminalreporter) -> None:
    if RELIABILITY_FIGURES:
        terminalreporter.section("reliability figures")
        for name, value in sorted(RELIABILITY_FIGURES.items()):
            terminalreporter.write_line(f"{name}: {value}")
