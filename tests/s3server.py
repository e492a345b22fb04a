"""A real S3-compatible server for the tests: moto's server in its own process on 127.0.0.1.

It speaks the S3 HTTP API to both Hadoop's S3A (in the Spark JVM) and boto3.
"""

from __future__ import annotations

import json
import os
import signal
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
def s3_server(check_credentials: bool = False) -> Iterator[S3Config]:
    """Start the server; with `check_credentials`, it refuses keys it did not issue."""
    with s3_server_process(check_credentials) as (config, _):
        yield config


@contextmanager
def s3_server_process(
    check_credentials: bool = False, **settings: float
) -> Iterator[tuple[S3Config, subprocess.Popen]]:
    """The server's config (with S3Config `settings` such as timeouts) and its process, for
    tests that freeze it (SIGSTOP) and thaw it (SIGCONT)."""
    port = free_port()
    env = dict(os.environ)
    if check_credentials:
        # The first three requests (create a user, its policy, its key) go unauthenticated.
        env["INITIAL_NO_AUTH_ACTION_COUNT"] = "3"
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
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
        config = S3Config(
            endpoint=endpoint, region="us-east-1", path_style_access=True, ssl=False, **settings
        )
        yield config, process
    finally:
        process.send_signal(signal.SIGCONT)  # a frozen server cannot terminate
        process.terminate()
        process.wait(timeout=10)


def issue_access_key(config: S3Config) -> tuple[str, str]:
    """Create a user allowed everything on a credential-checking server; return its key."""
    import boto3

    iam = boto3.client(
        "iam",
        endpoint_url=config.endpoint,
        region_name=config.region,
        aws_access_key_id="bootstrap",
        aws_secret_access_key="bootstrap",
    )
    iam.create_user(UserName="backfill")
    allow_all = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
    }
    iam.put_user_policy(UserName="backfill", PolicyName="all", PolicyDocument=json.dumps(allow_all))
    key = iam.create_access_key(UserName="backfill")["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]
