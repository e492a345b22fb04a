"""A real S3-compatible server for the tests: moto's server in its own process on 127.0.0.1.

It speaks the S3 HTTP API to both Hadoop's S3A (in the Spark JVM) and boto3.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

from pipelines.config import S3Config


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def s3_server() -> Iterator[S3Config]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("the S3 test server did not start") from None
                time.sleep(0.2)
        yield S3Config(endpoint=endpoint, region="us-east-1", path_style_access=True, ssl=False)
    finally:
        process.terminate()
        process.wait(timeout=10)
