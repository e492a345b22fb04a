"""A real Spark standalone cluster on 127.0.0.1: one master and two workers, started with
the `spark-class` launcher that ships inside pyspark."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pyspark

from tests.s3server import free_port

SPARK_HOME = Path(pyspark.__file__).parent


@dataclass(frozen=True)
class Cluster:
    master_url: str
    worker_dirs: list[Path]


def _spark_class(args: list[str], log: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "SPARK_HOME": str(SPARK_HOME),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "PYSPARK_PYTHON": sys.executable,
    }
    return subprocess.Popen(
        [str(SPARK_HOME / "bin" / "spark-class"), *args],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        env=env,
    )


@contextmanager
def standalone_cluster(workdir: Path, workers: int = 2) -> Iterator[Cluster]:
    workdir.mkdir(parents=True, exist_ok=True)
    port, ui_port = free_port(), free_port()
    master_url = f"spark://127.0.0.1:{port}"
    processes = [
        _spark_class(
            [
                "org.apache.spark.deploy.master.Master",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--webui-port",
                str(ui_port),
            ],
            workdir / "master.log",
        )
    ]
    worker_dirs = []
    try:
        for index in range(workers):
            worker_dir = workdir / f"worker-{index}"
            worker_dirs.append(worker_dir)
            processes.append(
                _spark_class(
                    [
                        "org.apache.spark.deploy.worker.Worker",
                        master_url,
                        "--host",
                        "127.0.0.1",
                        "--cores",
                        "1",
                        "--memory",
                        "2g",
                        "--work-dir",
                        str(worker_dir),
                        "--webui-port",
                        str(free_port()),
                    ],
                    workdir / f"worker-{index}.log",
                )
            )
        _wait_for_workers(ui_port, workers, processes)
        yield Cluster(master_url, worker_dirs)
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def _wait_for_workers(ui_port: int, expected: int, processes: list[subprocess.Popen]) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in processes):
            raise RuntimeError("a Spark master or worker process exited at start")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/json/", timeout=2) as reply:
                state = json.load(reply)
            if sum(1 for w in state.get("workers", []) if w.get("state") == "ALIVE") >= expected:
                return
        except (OSError, ValueError):  # not up yet, or a page that is not the JSON state yet
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{expected} Spark workers did not register with the master in 90 s")
